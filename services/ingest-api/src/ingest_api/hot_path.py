"""`POST /v1/events` served below FastAPI's router.

FastAPI's routing, dependency solving and exception layers cost about 135 us per request on
this stack (a bare FastAPI endpoint answers ~5,200 requests/s where the same endpoint as
plain ASGI answers ~18,000), more than validating, enriching and publishing a single event.
The collector's busiest route therefore runs here, inside `CollectorMiddleware` (request id,
CORS, metrics and logs still apply), with the same code as the FastAPI route: write-key
resolution, `collect_native` and the error answers. The FastAPI route stays registered: it
documents the endpoint in the OpenAPI document.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from ingest_api.auth import require_client
from ingest_api.errors import ApiError, error_response
from ingest_api.routes.events import collect_native

_JSON = b"application/json"


class IndexedHeaders(Headers):
    """Request headers behind a dict: Starlette's `Headers` answers `get` and `in` through
    `Mapping`'s pure-Python methods, scanning the raw list each time, and a request of this
    route looks up about eight of them. The first value of a repeated header wins, as in
    `Headers`."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope=scope)
        self._index: dict[str, str] = {}
        for name, value in reversed(self.raw):
            self._index[name.decode("latin-1")] = value.decode("latin-1")

    def __getitem__(self, key: str) -> str:
        return self._index[key.lower()]

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and key.lower() in self._index

    def get(self, key: str, default: Any = None) -> Any:
        return self._index.get(key.lower(), default)


class HotRequest(Request):
    @property
    def headers(self) -> Headers:
        headers = self.__dict__.get("_indexed_headers")
        if headers is None:
            headers = self.__dict__["_indexed_headers"] = IndexedHeaders(self.scope)
        return headers


async def native_events(scope: Scope, receive: Receive, send: Send) -> None:
    request = HotRequest(scope, receive)
    try:
        client = await require_client(request)
        status, body = await collect_native(request, client, request.app.state.collector)
    except ApiError as exc:
        await error_response(exc)(scope, receive, send)
        return
    # The two ASGI messages a Starlette Response would send, without building one.
    headers = [(b"content-type", _JSON), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


HOT_ROUTES = {("POST", "/v1/events"): native_events}
