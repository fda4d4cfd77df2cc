"""`POST /v1/events` in the OpenAPI document (served by the core: `ingest_api.native`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ingest_api.openapi import COMMON_ERRORS, BatchResult, ErrorBody, EventBatch, json_body, ref
from ingest_api.routes.collect import add_core_route

router = APIRouter(prefix="/v1", tags=["events"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "Malformed JSON or body (an error), or no valid event (per-event results)",
        "content": {
            "application/json": {
                "schema": {"anyOf": [ref(ErrorBody), {"$ref": "#/components/schemas/BatchResult"}]}
            }
        },
    },
    **COMMON_ERRORS,
}

add_core_route(
    router,
    "/events",
    "POST",
    "collect",
    status_code=202,
    response_model=BatchResult,
    summary="Collect a batch of events (or one event)",
    description="Body: `{sent_at, events: [...]}` or one event object, as application/json "
    "or text/plain (navigator.sendBeacon), optionally gzip-encoded. Valid events are "
    "published and invalid ones named by index and reason (and sent to the dead-letter "
    "topic). 202 only once Kafka acknowledged every accepted event.",
    openapi_extra=json_body({"anyOf": [ref(EventBatch), {"$ref": "#/components/schemas/Event"}]}),
    responses=_RESPONSES,
)
