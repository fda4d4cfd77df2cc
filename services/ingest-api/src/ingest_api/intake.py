"""From request bytes to Kafka records: body limits, parsing, per-event validation.

Everything here is pure (no I/O): the routes read the request, call these, and publish.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from pydantic import TypeAdapter, ValidationError

from clickstream_common.schema import STANDARD_EVENT_TYPES, Event, UtcDatetime
from ingest_api.enrichment import RequestFacts, enrich
from ingest_api.errors import ApiError

JSON_TYPES = frozenset({"application/json", "text/plain", ""})
_DATETIME: TypeAdapter[datetime] = TypeAdapter(UtcDatetime)
_DUMPS_OPTIONS = orjson.OPT_UTC_Z


@dataclass(frozen=True)
class Limits:
    max_events: int
    max_request_bytes: int
    max_event_bytes: int
    max_properties_bytes: int


class Candidate(NamedTuple):
    """One event of a request: what the client sent and the native event made of it."""

    original: Any  # as received; what the dead-letter topic keeps
    event: Any  # the native event object to validate (Segment messages are mapped first)
    sent_at: datetime | None
    error: tuple[str, str] | None = None  # (code, reason) when mapping already failed
    # The end user's address as a trusted server source reported it (context.ip), already
    # cut to its network; None: the request's own address.
    client_ip: str | None = None


@dataclass
class Outcome:
    # (key, value) records for the events topic and the dead-letter topic; emptied once
    # handed to the producer (`KafkaPublisher.publish`), so counts come from the lists below.
    accepted: list[tuple[bytes, bytes]] = field(default_factory=list)
    dead: list[tuple[bytes, bytes]] = field(default_factory=list)
    # The event type of each accepted event.
    accepted_types: list[str] = field(default_factory=list)
    # (index, code, reason)
    rejected: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def accepted_count(self) -> int:
        return len(self.accepted_types)

    def result(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted_count,
            "rejected": [{"index": i, "code": c, "reason": r} for i, c, r in self.rejected],
        }


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_media_type(content_type: str | None) -> None:
    kind = media_type(content_type)
    if kind not in JSON_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"unsupported media type {kind!r}; send application/json or text/plain",
        )


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "request_too_large",
        f"request body over the limit of {limit} bytes (INGEST_MAX_REQUEST_BYTES)",
    )


async def read_limited(
    chunks: AsyncIterator[bytes], declared_length: str | None, encoding: str | None, limit: int
) -> bytes:
    """The (decompressed) body, refusing more than `limit` bytes before reading them all."""
    if declared_length and declared_length.isdigit() and int(declared_length) > limit:
        raise too_large(limit)
    encoding = (encoding or "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        raise ApiError(
            415, "unsupported_encoding", f"unsupported Content-Encoding {encoding!r}; use gzip"
        )
    gzipped = encoding in ("gzip", "x-gzip")
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
    parts: list[bytes] = []
    size = 0
    compressed = 0
    async for received in chunks:
        chunk = received
        compressed += len(chunk)
        # gzip never makes JSON larger than the plain limit; this bounds the wire bytes too.
        if compressed > limit:
            raise too_large(limit)
        if decompressor is not None:
            try:
                chunk = decompressor.decompress(chunk, limit + 1 - size)
            except zlib.error as exc:
                raise ApiError(400, "invalid_gzip", f"body is not valid gzip: {exc}") from exc
            if decompressor.unconsumed_tail:
                raise too_large(limit)
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        parts.append(chunk)
    if decompressor is not None:
        try:
            tail = decompressor.flush()
        except zlib.error as exc:
            raise ApiError(400, "invalid_gzip", f"body is not valid gzip: {exc}") from exc
        if not decompressor.eof:
            raise ApiError(400, "invalid_gzip", "body is not valid gzip: truncated stream")
        size += len(tail)
        if size > limit:
            raise too_large(limit)
        parts.append(tail)
    return b"".join(parts)


def load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"malformed JSON: {exc}") from exc


def parse_datetime(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        return _DATETIME.validate_python(value)
    except ValidationError as exc:
        raise ApiError(400, "invalid_sent_at", f"{what}: {describe(exc)}") from exc


def check_count(count: int, limits: Limits) -> None:
    if count > limits.max_events:
        raise ApiError(
            413,
            "too_many_events",
            f"{count} events is over the limit of {limits.max_events} per request "
            "(INGEST_MAX_EVENTS_PER_REQUEST)",
        )
    if count == 0:
        raise ApiError(400, "no_events", "the request holds no event")


def native_events(document: Any, limits: Limits) -> tuple[datetime | None, list[Any], bool]:
    """`{sent_at, events: [...]}` or one event object -> (sent_at, events, is_batch)."""
    if not isinstance(document, dict):
        raise ApiError(
            400, "invalid_body", "body must be a JSON object: an event or {sent_at, events}"
        )
    if "events" not in document:
        return None, [document], False
    events = document["events"]
    if not isinstance(events, list):
        raise ApiError(400, "invalid_body", "events must be a JSON array")
    check_count(len(events), limits)
    return parse_datetime(document.get("sent_at"), "sent_at"), events, True


def describe(error: ValidationError) -> str:
    """One line naming each invalid field and why."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "event"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def check_event(raw: Any, limits: Limits) -> tuple[Event | None, str, str]:
    """(event, "", "") when valid, else (None, code, reason)."""
    if not isinstance(raw, dict):
        return None, "not_an_object", "event must be a JSON object"
    size = len(orjson.dumps(raw))
    if size > limits.max_event_bytes:
        return (
            None,
            "event_too_large",
            f"event of {size} bytes is over the limit of {limits.max_event_bytes} bytes "
            "(INGEST_MAX_EVENT_BYTES)",
        )
    properties = raw.get("properties")
    if properties is not None:
        size = len(orjson.dumps(properties))
        if size > limits.max_properties_bytes:
            return (
                None,
                "properties_too_large",
                f"properties of {size} bytes are over the limit of "
                f"{limits.max_properties_bytes} bytes (INGEST_MAX_PROPERTIES_BYTES)",
            )
    try:
        return Event.model_validate(raw), "", ""
    except ValidationError as exc:
        return None, "invalid", describe(exc)


def process(
    candidates: Iterable[Candidate],
    facts: RequestFacts,
    limits: Limits,
    request_id: str,
    endpoint: str,
) -> Outcome:
    """Validate and enrich each event; invalid ones become dead letters with their reason."""
    outcome = Outcome()
    for index, (original, raw, sent_at, error, reported_ip) in enumerate(candidates):
        if error is not None:
            event, code, reason = None, *error
        else:
            event, code, reason = check_event(raw, limits)
        if event is None:
            outcome.rejected.append((index, code, reason))
            letter = {
                "reason": reason,
                "code": code,
                "index": index,
                "source": facts.source,
                "endpoint": endpoint,
                "request_id": request_id,
                "received_at": facts.received_at,
                "event": original,
            }
            outcome.dead.append(
                (facts.source.encode(), orjson.dumps(letter, option=_DUMPS_OPTIONS))
            )
            continue
        own = facts if reported_ip is None else replace(facts, client_ip=reported_ip)
        enriched = enrich(event, own, sent_at)
        key = event.user_id or event.anonymous_id or ""
        outcome.accepted.append((key.encode(), orjson.dumps(enriched, option=_DUMPS_OPTIONS)))
        outcome.accepted_types.append(event.event_type)
    return outcome


def metric_event_type(event_type: str) -> str:
    # Custom names are unbounded; keep the metric's label set small.
    return event_type if event_type in STANDARD_EVENT_TYPES else "custom"
