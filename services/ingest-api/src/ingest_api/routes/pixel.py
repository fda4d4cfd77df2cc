"""`GET /v1/pixel.gif`: a 1x1 GIF that records the event in its query string."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from clickstream_common.schema import EVENT_TYPE_PATTERN
from ingest_api.collector import now
from ingest_api.deps import IntakeDep
from ingest_api.errors import ApiError
from ingest_api.intake import Candidate
from ingest_api.openapi import COMMON_ERRORS, error
from ingest_api.pixel import EVENT_FIELDS, PIXEL, event_from_query

router = APIRouter(prefix="/v1", tags=["pixel"])

_NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate", "Expires": "0"}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": r"\S"}
_PARAMETER_SCHEMAS: dict[str, dict[str, Any]] = {
    "event_id": {"type": "string", "minLength": 1, "maxLength": 128},
    "event_type": {"type": "string", "pattern": EVENT_TYPE_PATTERN, "default": "page_view"},
    "timestamp": {"type": "string", "format": "date-time"},
    "user_id": _TEXT,
    "anonymous_id": _TEXT,
    "session_id": _TEXT,
    "page_url": {"type": "string", "maxLength": 2048},
    "referrer": {"type": "string", "maxLength": 2048},
    "product_id": _TEXT,
    "search_query": {"type": "string", "maxLength": 1024},
    "quantity": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
    "price": {"type": "number", "minimum": 0, "maximum": 1e12},
    "revenue": {"type": "number", "minimum": -1e12, "maximum": 1e12},
    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
}
_PARAMETERS: list[dict[str, Any]] = [
    {"name": "write_key", "in": "query", "required": True, "schema": {"type": "string"}},
    *(
        {"name": name, "in": "query", "required": False, "schema": _PARAMETER_SCHEMAS[name]}
        for name in EVENT_FIELDS
    ),
    {
        "name": "properties",
        "in": "query",
        "required": False,
        "description": "A JSON object; `p.<name>=<value>` parameters add string properties.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
]


@router.get(
    "/pixel.gif",
    summary="Record one event from the query string; answers a 1x1 GIF",
    description="For pages without JavaScript and for e-mail opens. `event_type` defaults to "
    "page_view and `timestamp` to the receive time; one of user_id or anonymous_id is needed "
    "(a rule the parameter schemas cannot express).",
    response_class=Response,
    responses={
        200: {"content": {"image/gif": {}}, "description": "The event is stored in Kafka"},
        400: error("The event is invalid (it went to the dead-letter topic)"),
        **COMMON_ERRORS,
    },
    openapi_extra={"parameters": _PARAMETERS},
)
async def pixel(request: Request, intake: IntakeDep) -> Response:
    received_at = now()
    client, collector = intake.client, intake.collector
    event = event_from_query(request.query_params.multi_items(), received_at)
    # A pixel carries no send time, so no clock correction applies.
    outcome = await collector.ingest(
        request, client, received_at, [Candidate(event, event, None)], "pixel"
    )
    if not outcome.accepted_count:
        _, code, reason = outcome.rejected[0]
        raise ApiError(400, code, reason, headers=_NO_CACHE)
    return Response(PIXEL, media_type="image/gif", headers=_NO_CACHE)
