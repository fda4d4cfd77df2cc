"""`GET /v1/pixel.gif?...`: an event from a query string (no JavaScript, e-mail opens)."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

EVENT_FIELDS = (
    "event_id",
    "event_type",
    "timestamp",
    "user_id",
    "anonymous_id",
    "session_id",
    "page_url",
    "referrer",
    "product_id",
    "search_query",
    "quantity",
    "price",
    "revenue",
    "currency",
)
PROPERTY_PREFIX = "p."


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
