"""Request and response bodies as the OpenAPI document describes them.

The collecting routes read their bodies themselves (per-event validation, text/plain
beacons, gzip), so their request schemas are declared here and added to the components.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from clickstream_common.schema import (
    EARLIEST_TIME,
    LATEST_TIME,
    UNSTORABLE_TEXT_PATTERN,
    USER_KEY_FIELDS,
    Event,
)
from ingest_api.segment import SegmentBatch, SegmentMessage

REF = "#/components/schemas/{model}"


class EventBatch(BaseModel):
    """A batch of events; a single event object is accepted as the whole body too."""

    sent_at: datetime | None = Field(
        default=None, description="RFC 3339 device time of sending; corrects clock skew."
    )
    # The most per request comes from Settings (`components`), not from this model.
    events: list[Event] = Field(min_length=1)


class Rejection(BaseModel):
    index: int = Field(description="Position of the event in the request.")
    code: str = Field(
        description="invalid, not_an_object, event_too_large, properties_too_large, "
        "unstorable_text, too_long_to_index, time_out_of_range, too_deeply_nested"
    )
    reason: str


class BatchResult(BaseModel):
    accepted: int
    rejected: list[Rejection]


class SegmentResult(BatchResult):
    success: bool


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable reason, e.g. request_too_large.")
    message: str
    detail: str


def ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def components(max_events: int) -> dict[str, Any]:
    """The request and answer schemas; `max_events` is INGEST_MAX_EVENTS_PER_REQUEST."""
    _, schema = models_json_schema(
        [(m, "validation") for m in (EventBatch, Event, SegmentBatch, SegmentMessage, ErrorBody)],
        ref_template=REF,
    )
    defs: dict[str, Any] = schema.get("$defs", {})
    defs["EventBatch"]["properties"]["events"]["maxItems"] = max_events
    defs["SegmentBatch"]["properties"]["batch"]["maxItems"] = max_events
    # What the model's validator adds to the field types: a non-blank user or anonymous id.
    event = defs["Event"]
    event["anyOf"] = [
        {"required": [name], "properties": {name: {"type": "string", "pattern": r"\S"}}}
        for name in USER_KEY_FIELDS
    ]
    # Free-form objects hold storable text only (`unstorable_text` refuses the event
    # otherwise): what a client may send, described to a depth of three levels.
    for name in ("properties", "raw_context"):
        event["properties"][name]["anyOf"][0] = storable_object()
    # Times the stores can hold lie between EARLIEST_TIME and LATEST_TIME in UTC; whether a
    # time of their own years does depends on its offset, so those years are left out.
    edges = f"{EARLIEST_TIME.year:04d}-|{LATEST_TIME.year:04d}-"
    event["properties"]["timestamp"]["pattern"] = f"^(?!{edges})"
    return defs


def storable_object() -> dict[str, Any]:
    """A JSON object whose names and texts hold no character the stores refuse."""
    text = {"type": "string", "pattern": f"^[^{UNSTORABLE_TEXT_PATTERN[1:-1]}]*$"}
    scalar = {"anyOf": [text, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]}
    inner = {"type": "object", "propertyNames": text, "additionalProperties": scalar}
    value = {"anyOf": [scalar, {"type": "array", "items": scalar}, inner]}
    return {"type": "object", "propertyNames": text, "additionalProperties": value}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI requestBody accepted as application/json or text/plain (sendBeacon)."""
    content = {kind: {"schema": schema} for kind in ("application/json", "text/plain")}
    return {"requestBody": {"required": True, "content": content}}


def error(description: str) -> dict[str, Any]:
    return {"description": description, "model": ErrorBody}


RATE_LIMITED = error("Over the write key's rate limit; retry after Retry-After seconds")
UNAVAILABLE = error(
    "Kafka did not acknowledge every event in time (some may be stored): send the same body "
    "again after Retry-After; its events keep their ids and are deduplicated"
)
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: error("Missing or unknown write key"),
    403: error("The request's Origin is not allowed for this write key"),
    408: error("The body did not arrive within INGEST_BODY_TIMEOUT_SECONDS"),
    413: error("Over a size limit, named in the answer"),
    415: error("Unsupported media type or content encoding"),
    429: RATE_LIMITED,
    503: UNAVAILABLE,
}
