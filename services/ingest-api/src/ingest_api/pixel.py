"""`GET /v1/pixel.gif?...`: an event from a query string (no JavaScript, e-mail opens)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

from clickstream_common.schema import Event
from ingest_api.collector import Collector, Route
from ingest_api.errors import ApiError
from ingest_api.exchange import Request, Response
from ingest_api.intake import Batch, Candidate

# A transparent 1x1 GIF, never cached: each fetch is an event.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

EVENT_FIELDS: tuple[str, ...] = tuple(
    name for name in Event.model_fields if name not in ("properties", "context")
)
"""The event's scalar fields, each a query parameter of its own name."""
PROPERTY_PREFIX = "p."
NO_CACHE = (("Cache-Control", "no-cache, no-store, must-revalidate"), ("Expires", "0"))


def event_from_query(params: Iterable[tuple[str, str]], received_at: datetime) -> dict[str, Any]:
    """The native event a pixel's query string describes.

    Event fields by name; `properties` as a JSON object and/or `p.<name>=<value>` pairs;
    `event_type` defaults to page_view and `timestamp` to the receive time. Other
    parameters (cache busters, the write key) are ignored.
    """
    event: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    for name, value in params:
        if name in EVENT_FIELDS:
            event.setdefault(name, value)
        elif name == "properties":
            try:
                loaded = orjson.loads(value)
            except orjson.JSONDecodeError:
                loaded = value  # left for validation to name
            if isinstance(loaded, dict):
                properties = {**loaded, **properties}
            else:
                event["properties"] = loaded
        elif name.startswith(PROPERTY_PREFIX) and len(name) > len(PROPERTY_PREFIX):
            properties.setdefault(name[len(PROPERTY_PREFIX) :], value)
    if properties and "properties" not in event:
        event["properties"] = properties
    event.setdefault("event_type", "page_view")
    event.setdefault("timestamp", received_at.isoformat())
    return event


async def collect_pixel(collector: Collector, request: Request) -> Response:
    """The GIF once the bus holds the event; the JSON error otherwise (never cached)."""
    try:
        client = collector.authenticate(request, collector.offered_key(request))
    except ApiError as exc:
        exc.headers.update(NO_CACHE)
        raise
    received_at = collector.clock()
    event = event_from_query(request.query_items(), received_at)
    try:
        # A pixel carries no send time, so no clock correction applies.
        # The query is the pixel's body: it names an event sent without an id.
        batch = Batch(hashlib.sha256(request.query_string.encode("latin-1")).digest(), True)
        outcome = await collector.ingest(
            request, client, received_at, [Candidate(event, event, None)], "pixel", batch
        )
    except ApiError as exc:
        exc.headers.update(NO_CACHE)
        return exc.response(client.allowed_origins)
    if not outcome.accepted_count:
        _, code, reason = outcome.rejected[0]
        return ApiError(400, code, reason, headers=dict(NO_CACHE)).response(client.allowed_origins)
    return Response(200, PIXEL, "image/gif", NO_CACHE, client.allowed_origins)


ROUTES = (Route("/v1/pixel.gif", ("GET",), collect_pixel),)
