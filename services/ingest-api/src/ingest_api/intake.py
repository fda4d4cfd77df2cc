"""From request bytes to Kafka records: body limits, parsing, per-event validation.

Everything here is pure (no I/O): the routes read the request, call these, and publish.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
import zlib
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from pydantic import TypeAdapter, ValidationError

from clickstream_common.schema import (
    STANDARD_EVENT_TYPES,
    UNSTORABLE_TEXT_PATTERN,
    Event,
    EventContext,
    UtcDatetime,
    unstorable_text,
    user_key_of,
)
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
    # Accepted events whose time the clock policy replaced, by the bound they crossed.
    adjusted: dict[str, int] = field(default_factory=dict)

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
    chunks: AsyncIterable[bytes], declared_length: str | None, encoding: str | None, limit: int
) -> bytes:
    """The (decompressed) body, refusing more than `limit` bytes before reading them all:
    a declared length, the bytes on the wire and the inflated bytes are each checked (gzip
    never makes JSON larger, so the wire bytes are held to the same limit)."""
    if declared_length and declared_length.isdigit() and int(declared_length) > limit:
        raise too_large(limit)
    encoding = (encoding or "").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        raise ApiError(
            415, "unsupported_encoding", f"unsupported Content-Encoding {encoding!r}; use gzip"
        )
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        parts.append(chunk)
    body = b"".join(parts)
    return gunzip(body, limit) if encoding in ("gzip", "x-gzip") else body


def gunzip(data: bytes, limit: int) -> bytes:
    """Every member of a gzip stream, as `gzip -d` reads concatenated members (trailing
    zero padding ignored too), refusing more than `limit` bytes of output before inflating
    them: a small bomb is refused after `limit` bytes."""
    out: list[bytes] = []
    size = 0
    rest = data
    member = 0
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            what = "data after the last gzip member is not gzip" if member else str(exc)
            raise ApiError(400, "invalid_gzip", f"body is not valid gzip: {what}") from exc
        size += len(chunk)
        if size > limit or inflater.unconsumed_tail:
            raise too_large(limit)
        if not inflater.eof:
            raise ApiError(400, "invalid_gzip", "body is not valid gzip: truncated stream")
        out.append(chunk)
        rest = inflater.unused_data
        if not rest.strip(b"\0"):
            return b"".join(out)
        member += 1


@dataclass(frozen=True, slots=True)
class Batch:
    """What the events of one request share, besides the request's facts."""

    # SHA-256 of the request's (decompressed) body, or of a pixel's query: with the source
    # and the event's position, it names events that came without an id, so a client's
    # retry of the same body gets the same ids (and is deduplicated downstream).
    digest: bytes
    # The body may hold text no store can hold (NUL, lone surrogates): check each event.
    check_text: bool


# Markers that a JSON body may hold NUL or a lone surrogate: both can only appear as escapes
# (raw control characters are not valid JSON, and orjson refuses invalid UTF-8). Valid
# surrogate pairs (an escaped emoji) match too; those bodies are checked event by event.
_UNSTORABLE_ESCAPES = (b"\\u0000", b"\\ud", b"\\uD")


def parse_body(body: bytes) -> tuple[Any, Batch]:
    """The body's JSON document, and what its events share."""
    document, lenient = load_json(body)
    check_text = lenient or any(marker in body for marker in _UNSTORABLE_ESCAPES)
    return document, Batch(hashlib.sha256(body).digest(), check_text)


def load_json(body: bytes) -> tuple[Any, bool]:
    """(document, read leniently). orjson, which is fast, refuses JSON text with lone
    surrogate escapes and bodies with bytes that are not UTF-8; those are read again with the
    standard library (invalid bytes become lone surrogates), so that only the events holding
    them are refused, by `unstorable_text`, and not the whole request."""
    try:
        return orjson.loads(body), False
    except orjson.JSONDecodeError as exc:
        error = exc
    try:
        document = json.loads(
            body.decode("utf-8", "surrogateescape"),
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_int_as_orjson_reads_it,
        )
    except (ValueError, RecursionError):
        raise ApiError(400, "malformed_json", f"malformed JSON: {error}") from error
    return document, True


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number is infinity when parsed as double")
    return value


def _int_as_orjson_reads_it(text: str) -> int | float:
    # orjson reads integers beyond 64 bits as floats; the lenient reading must not differ.
    value = int(text)
    return value if -(2**63) <= value < 2**64 else float(value)


def parse_datetime(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        return _DATETIME.validate_python(value)
    except ValidationError as exc:
        raise ApiError(400, "invalid_sent_at", describe(exc, what)[1]) from exc


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


REASON_MAX_LENGTH = 1000
"""Reasons name fields and echo parts of names: bounded, in answers and dead letters."""
DEAD_LETTER_EXCERPT_BYTES = 4096
"""How much of an original event a dead letter keeps when the event is too large to keep."""
_NAMED_ERRORS = frozenset({"time_out_of_range", "too_long_to_index"})
_UNPRINTABLE = re.compile(UNSTORABLE_TEXT_PATTERN)


def printable(text: str, limit: int = REASON_MAX_LENGTH) -> str:
    """Text that any JSON encoder and store takes: at most `limit` characters, NUL and lone
    surrogates shown as U+FFFD."""
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return _UNPRINTABLE.sub("\ufffd", text)


def describe(error: ValidationError, subject: str = "event") -> tuple[str, str]:
    """(code, one line naming each invalid field and why). The code is the first error's own
    name where the schema names it (time_out_of_range, too_long_to_index), else invalid.
    `subject` names what was validated when the error is about it as a whole."""
    parts = []
    code = "invalid"
    for number, item in enumerate(error.errors(include_url=False)):
        if number == 0 and item["type"] in _NAMED_ERRORS:
            code = item["type"]
        where = ".".join(str(p)[:64] for p in item["loc"]) or subject
        parts.append(f"{where}: {item['msg']}")
    return code, printable("; ".join(parts))


_CONTEXT_FIELDS = frozenset(EventContext.model_fields)


def check_event(raw: Any, limits: Limits, check_text: bool) -> tuple[Event | None, str, str]:
    """(event, "", "") when valid, else (None, code, reason)."""
    if not isinstance(raw, dict):
        return None, "not_an_object", "event must be a JSON object"
    context = raw.get("context")
    if isinstance(context, dict) and not context.keys() <= _CONTEXT_FIELDS:
        # The schema drops context fields it does not know: judge what would be published.
        raw = {**raw, "context": {k: v for k, v in context.items() if k in _CONTEXT_FIELDS}}
    if check_text:
        problem = unstorable_text(raw)
        if problem:
            return None, "unstorable_text", printable(problem)
    try:
        size = len(orjson.dumps(raw))
    except orjson.JSONEncodeError:
        # Nesting beyond orjson's 255 levels, or (in a body not flagged) unstorable text.
        problem = unstorable_text(raw)
        if problem:
            return None, "unstorable_text", printable(problem)
        return None, "too_deeply_nested", "event nested deeper than 254 levels"
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
        return None, *describe(exc)


def derived_event_id(source: str, digest: bytes, index: int) -> str:
    """The id of an event sent without one: the same source, body and position give the
    same id, so a retried body is deduplicated downstream like one with client ids."""
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{source}\n{digest.hex()}\n{index}"))


_EVENT_ID_NAMESPACE = uuid.UUID("6f1d3c7e-5b0a-4c8e-9a55-2f0c1e7d8b41")


def echo(original: Any, max_bytes: int) -> dict[str, Any]:
    """The dead letter's copy of what the client sent: whole when its JSON text is at most
    `max_bytes`, else its first DEAD_LETTER_EXCERPT_BYTES as text; with the size and SHA-256
    of the whole text either way (values orjson cannot write are written by `json_text`)."""
    try:
        text = orjson.dumps(original)
    except orjson.JSONEncodeError:
        text = json_text(original).encode()
        writable = False
    else:
        # In the letter the original sits one level deeper: it must still be writable there.
        writable = _nests_one_more(original)
    copy: dict[str, Any] = {
        "event_bytes": len(text),
        "event_sha256": hashlib.sha256(text).hexdigest(),
    }
    if writable and len(text) <= max_bytes:
        copy["event"] = original
    elif len(text) <= max_bytes:
        copy["event_text"] = text.decode()
    else:
        copy["event_excerpt"] = text[:DEAD_LETTER_EXCERPT_BYTES].decode("utf-8", "ignore")
    return copy


def _nests_one_more(value: Any) -> bool:
    try:
        orjson.dumps([value])
    except orjson.JSONEncodeError:
        return False
    return True


def json_text(value: Any) -> str:
    """JSON text of any parsed document, without recursion (nesting to 1024 levels) and
    with lone surrogates written as escapes; for what orjson refuses to write."""
    pieces: list[str] = []
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, _Token):
            pieces.append(item.text)
        elif isinstance(item, dict):
            pending.append(_Token("}"))
            for number, (key, child) in enumerate(reversed(list(item.items()))):
                pending.append(child)
                separator = "" if number == len(item) - 1 else ","
                pending.append(_Token(separator + json.dumps(str(key)) + ":"))
            pending.append(_Token("{"))
        elif isinstance(item, list):
            pending.append(_Token("]"))
            for number, child in enumerate(reversed(item)):
                pending.append(child)
                if number != len(item) - 1:
                    pending.append(_Token(","))
            pending.append(_Token("["))
        else:
            pieces.append(json.dumps(item))
    return "".join(pieces)


class _Token(NamedTuple):
    text: str


def process(
    candidates: Iterable[Candidate],
    facts: RequestFacts,
    limits: Limits,
    request_id: str,
    endpoint: str,
    batch: Batch,
) -> Outcome:
    """Validate and enrich each event; invalid ones become dead letters with their reason."""
    outcome = Outcome()
    source_key = facts.source.encode()
    for index, (original, raw, sent_at, error, reported_ip) in enumerate(candidates):
        if error is not None:
            event, code, reason = None, error[0], printable(error[1])
        else:
            event, code, reason = check_event(raw, limits, batch.check_text)
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
                **echo(original, limits.max_event_bytes),
            }
            outcome.dead.append((source_key, orjson.dumps(letter, option=_DUMPS_OPTIONS)))
            continue
        event_id = "" if event.event_id else derived_event_id(facts.source, batch.digest, index)
        own = facts if reported_ip is None else replace(facts, client_ip=reported_ip)
        enriched = enrich(event, own, sent_at, event_id)
        adjusted = enriched.get("event_time_adjusted")
        if adjusted:
            outcome.adjusted[adjusted] = outcome.adjusted.get(adjusted, 0) + 1
        # The user key keeps each user's events in one partition, in order.
        key = user_key_of(event.user_id, event.anonymous_id) or ""
        outcome.accepted.append((key.encode(), orjson.dumps(enriched, option=_DUMPS_OPTIONS)))
        outcome.accepted_types.append(event.event_type)
    return outcome


def metric_event_type(event_type: str) -> str:
    # Custom names are unbounded; keep the metric's label set small.
    return event_type if event_type in STANDARD_EVENT_TYPES else "custom"
