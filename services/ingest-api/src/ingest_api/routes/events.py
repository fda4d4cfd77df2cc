"""`POST /v1/events`: the native collector endpoint."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from ingest_api.auth import Client
from ingest_api.collector import Collector, now
from ingest_api.deps import IntakeDep
from ingest_api.errors import ApiError
from ingest_api.intake import Candidate, Limits, load_json, native_events
from ingest_api.openapi import COMMON_ERRORS, BatchResult, ErrorBody, EventBatch, json_body, ref

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


@router.post(
    "/events",
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
async def collect(request: Request, intake: IntakeDep) -> Response:
    status, body = await collect_native(request, intake.client, intake.collector)
    return Response(body, status_code=status, media_type="application/json")


async def collect_native(
    request: Request, client: Client, collector: Collector
) -> tuple[int, bytes]:
    """The endpoint's work, shared by the FastAPI route and the hot path (`hot_path.py`):
    the status and JSON body of the answer."""
    received_at = now()
    candidates = native_candidates(await collector.read_body(request), collector.limits)
    outcome = await collector.ingest(request, client, received_at, candidates, "events")
    return (202 if outcome.accepted_count else 400), orjson.dumps(outcome.result())


def native_candidates(body: bytes, limits: Limits) -> list[Candidate]:
    """The body's events; the body and its parsed document are not kept beyond this."""
    sent_at, raw_events, is_batch = native_events(load_json(body), limits)
    if not is_batch and len(body) > limits.max_event_bytes:
        raise ApiError(
            413,
            "event_too_large",
            f"event over the limit of {limits.max_event_bytes} bytes (INGEST_MAX_EVENT_BYTES)",
        )
    return [Candidate(raw, raw, sent_at) for raw in raw_events]
