"""The adapter between ASGI and the collector core, for both ways in: `DispatchMiddleware`
(below FastAPI's router) and the FastAPI routes (`routes/collect.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send

from ingest_api.exchange import Disconnected, Request, Response, first_values

if TYPE_CHECKING:
    from ingest_api.collector import Collector

# Keys the middleware leave in the ASGI scope for the layers inside them.
REQUEST_ID_KEY = "clickstream.request_id"
ROUTE_KEY = "clickstream.route"


async def request_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def request_from_scope(scope: Scope, receive: Receive) -> Request:
    peer = scope.get("client")
    return Request(
        method=scope["method"],
        path=scope["path"],
        query_string=scope.get("query_string", b"").decode("latin-1"),
        headers=first_values(scope["headers"]),
        peer=peer[0] if peer else None,
        body=request_body(receive),
        request_id=scope.get(REQUEST_ID_KEY, ""),
    )


def note_origins(scope: Scope, response: Response) -> None:
    """Leave the resolved key's origins where `CorsMiddleware` reads them."""
    if response.allowed_origins is not None:
        scope.setdefault("state", {})["allowed_origins"] = response.allowed_origins


async def serve(collector: Collector, scope: Scope, receive: Receive, send: Send) -> None:
    response = await collector.handle(request_from_scope(scope, receive))
    note_origins(scope, response)
    start = {"type": "http.response.start", "status": response.status}
    await send({**start, "headers": response.header_pairs()})
    await send({"type": "http.response.body", "body": response.body})
