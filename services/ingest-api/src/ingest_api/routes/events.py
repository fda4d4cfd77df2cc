"""`POST /v1/events`: the native collector endpoint."""

from __future__ import annotations

import gzip
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, TypeAdapter, ValidationError

from clickstream_common.schema import STANDARD_EVENT_TYPES, Event, UtcDatetime
from ingest_api import metrics
from ingest_api.auth import Source
from ingest_api.config import Settings
from ingest_api.deps import Publisher, SettingsDep
from ingest_api.enrichment import enrich
from ingest_api.publisher import PublishError

router = APIRouter(prefix="/v1", tags=["events"])

JSON_TYPES = ("application/json", "text/plain", "")
_SENT_AT: TypeAdapter[datetime] = TypeAdapter(UtcDatetime)


class EventBatch(BaseModel):
    """Request body: a batch of events (a single event object is accepted too)."""

    sent_at: datetime | None = None
    events: list[Event]


class Rejection(BaseModel):
    index: int
    reason: str


class BatchResult(BaseModel):
    accepted: int
    rejected: list[Rejection]


def describe(error: ValidationError) -> str:
    """One line naming each invalid field and why."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "event"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


async def read_body(request: Request, settings: Settings) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES:
        raise HTTPException(415, f"unsupported media type {content_type!r}; send application/json")
    limit = settings.ingest_max_request_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body over the limit of {limit} bytes")
    body = await request.body()
    if request.headers.get("content-encoding", "").lower() == "gzip":
        try:
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            body = decompressor.decompress(body, limit + 1)
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise HTTPException(400, f"body is not valid gzip: {exc}") from exc
    if len(body) > limit:
        raise HTTPException(413, f"request body over the limit of {limit} bytes")
    metrics.PAYLOAD_BYTES.observe(len(body))
    return body


def parse_batch(body: bytes, settings: Settings) -> tuple[datetime | None, list[Any]]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"malformed JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise HTTPException(400, "body must be a JSON object: an event or {sent_at, events}")
    if "events" in document:
        events = document["events"]
        if not isinstance(events, list):
            raise HTTPException(400, "events must be a JSON array")
    else:
        events = [document]
    if not events:
        raise HTTPException(400, "events must not be empty")
    limit = settings.ingest_max_events_per_request
    if len(events) > limit:
        raise HTTPException(413, f"{len(events)} events is over the limit of {limit} per request")
    sent_at = None
    if "events" in document and document.get("sent_at") is not None:
        try:
            sent_at = _SENT_AT.validate_python(document["sent_at"])
        except ValidationError as exc:
            raise HTTPException(400, f"sent_at: {describe(exc)}") from exc
    return sent_at, events


def metric_event_type(event_type: str) -> str:
    # Custom names are unbounded; keep the metric's label set small.
    return event_type if event_type in STANDARD_EVENT_TYPES else "custom"


@router.post(
    "/events",
    status_code=202,
    response_model=BatchResult,
    summary="Collect a batch of events",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EventBatch.model_json_schema()}},
        }
    },
    responses={
        400: {"description": "Malformed JSON, or no valid event in the batch"},
        401: {"description": "Missing or unknown write key"},
        413: {"description": "Over a size limit (named in the answer)"},
        415: {"description": "Unsupported media type"},
        503: {"description": "Kafka did not acknowledge in time; retry after Retry-After"},
    },
)
async def collect(
    request: Request, source: Source, publisher: Publisher, settings: SettingsDep
) -> JSONResponse:
    received_at = datetime.now(UTC)
    body = await read_body(request, settings)
    sent_at, raw_events = parse_batch(body, settings)
    metrics.BATCH_EVENTS.observe(len(raw_events))
    tolerance = timedelta(seconds=settings.ingest_skew_tolerance_seconds)
    maximum = timedelta(seconds=settings.ingest_skew_max_seconds)

    accepted: list[tuple[bytes, bytes]] = []
    accepted_types: list[str] = []
    dead: list[tuple[bytes, bytes]] = []
    rejected: list[Rejection] = []
    for index, raw in enumerate(raw_events):
        reason = None
        if not isinstance(raw, dict):
            reason = "event must be a JSON object"
        elif len(orjson.dumps(raw)) > settings.ingest_max_event_bytes:
            reason = f"event over the limit of {settings.ingest_max_event_bytes} bytes"
        else:
            try:
                event = Event.model_validate(raw)
            except ValidationError as exc:
                reason = describe(exc)
        if reason is not None:
            rejected.append(Rejection(index=index, reason=reason))
            metrics.EVENTS_REJECTED.labels("invalid").inc()
            dead.append(
                (
                    source.encode(),
                    orjson.dumps(
                        {
                            "reason": reason,
                            "index": index,
                            "source": source,
                            "received_at": received_at.isoformat(),
                            "event": raw,
                        }
                    ),
                )
            )
            continue
        enriched = enrich(
            event,
            source=source,
            received_at=received_at,
            sent_at=sent_at,
            tolerance=tolerance,
            maximum=maximum,
        )
        accepted.append(
            (
                enriched.user_key.encode(),
                orjson.dumps(enriched.model_dump(mode="json", exclude_none=True)),
            )
        )
        accepted_types.append(enriched.event_type)

    try:
        await publisher.publish(settings.kafka_events_topic, accepted)
        await publisher.publish(settings.kafka_dead_letter_topic, dead)
    except PublishError as exc:
        raise HTTPException(
            503,
            f"events not stored, retry: {exc}",
            headers={"Retry-After": str(settings.ingest_retry_after_seconds)},
        ) from exc
    for event_type in accepted_types:
        metrics.EVENTS_ACCEPTED.labels(source, metric_event_type(event_type)).inc()

    result = BatchResult(accepted=len(accepted), rejected=rejected)
    status = 202 if accepted else 400
    return JSONResponse(result.model_dump(), status_code=status)
