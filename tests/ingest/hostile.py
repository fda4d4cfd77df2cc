"""Hostile requests for the collector's fuzz suite (test_fuzz.py): hypothesis strategies and
the bookkeeping that says, for each answer, which events must be in Kafka.

Bodies are written by `encode`, not by a JSON library: it must be able to write what JSON
libraries refuse to (lone surrogates, NUL, nesting 1024 deep, invalid UTF-8).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote_from_bytes

from hypothesis import strategies as st

from ingest_api.intake import derived_event_id

# Write keys of the test collector (tests/ingest/conftest.py KEYS) and their sources.
SOURCES = {"it-open": "it-web", "it-shop": "it-shop", "it-limited": "it-limited"}
CALLS = ("track", "page", "screen", "identify", "group", "alias")
EDGE_TIMES = (
    "9999-12-31T23:59:59-10:00",
    "0001-01-01T00:00:00+10:00",
    "9999-12-31T23:59:59Z",
    "9999-12-30T23:59:59.999999Z",
    "9999-06-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "0001-01-02T00:00:00Z",
    "2099-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-11-27T24:00:00Z",
    "2026-11-27T12:00:60Z",
    "2026-11-27",
    "99999-01-01T00:00:00Z",
    "now",
    "",
)


class Raw:
    """JSON text written into a body as it is (deep nesting, NaN, broken fragments)."""

    def __init__(self, text: str) -> None:
        self.text = text


def encode(value: Any, ascii_only: bool = True) -> str:
    """JSON text of a (`concrete`) drawn value. Strings go through `json.dumps`, which
    writes lone surrogates as `\\udxxx` escapes, or (not `ascii_only`) as they are, which
    makes bytes that are not UTF-8 once the text is encoded with `surrogatepass`."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        items = ",".join(
            f"{json.dumps(str(k), ensure_ascii=ascii_only)}:{encode(v, ascii_only)}"
            for k, v in value.items()
        )
        return "{" + items + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


# --- values ------------------------------------------------------------------------------

# Ids drawn, not counted: hypothesis must draw the same way when it replays a case. A clash
# is harmless: the ledger counts acceptances per id.
unique_ids = st.integers(0, 2**62).map(lambda n: f"fz-{n}")

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
hostile_text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.builds(lambda a, b: a + "\x00" + b, st.text(max_size=5), st.text(max_size=5)),
    st.builds(lambda a, s: a + s, st.text(max_size=5), surrogates),
    st.sampled_from([" ", "\t\n", "\u2028", "\ufeff", "é" * 1100, "x" * 3000, "😀" * 600]),
    st.integers(1, 40_000).map(lambda n: "y" * n),
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 1e12, 1e12 + 1, -1e12, 1_000_000, 1_000_001, 10**30, 1e308]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, hostile_text)
deep = st.integers(200, 1100).map(lambda d: Raw("[" * d + "]" * d))
broken_fragments = st.sampled_from([Raw("NaN"), Raw("Infinity"), Raw("1e400"), Raw('"\\ud800"')])
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(hostile_text, children, max_size=4),
    ),
    max_leaves=12,
)
hostile_values = st.one_of(json_values, deep, broken_fragments, unique_ids)


# Times near the fuzz run's start (a run takes minutes, well inside the clock policy's week),
# edge times, any representable time in any zone, numbers and other JSON.
NOW = datetime.now(UTC)
times = st.one_of(
    st.integers(-3600, 3600).map(lambda s: (NOW + timedelta(seconds=s)).isoformat()),
    st.sampled_from(EDGE_TIMES),
    st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.timezones()
    ).map(lambda d: d.isoformat()),
    numbers,
    json_values,
)


# --- native events -----------------------------------------------------------------------

EVENT_TYPES = st.sampled_from(["page_view", "add_to_cart", "purchase", "signed_up", "Bad Type"])
FIELDS = [
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
    "properties",
    "context",
    "unknown_field",
]


_contexts = st.one_of(
    hostile_values, st.fixed_dictionaries({"user_agent": hostile_text, "screen_width": numbers})
)
_properties = st.dictionaries(st.text(max_size=8), json_values, max_size=3)
_changes = st.lists(st.sampled_from(FIELDS), max_size=3)
# Around the limit of an index key (2048 bytes in UTF-8), in characters of 1 to 4 bytes.
_long_urls = st.builds(
    lambda char, n: "https://s.example/" + char * n,
    st.sampled_from(["a", "é", "€", "😀"]),
    st.integers(400, 2100),
)


@st.composite
def _native_event(draw: st.DrawFn) -> Any:
    """Mostly a valid event with up to three hostile changes; sometimes anything at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(hostile_values)
    event: dict[str, Any] = {
        "event_type": draw(EVENT_TYPES),
        "timestamp": (NOW - timedelta(seconds=draw(st.integers(0, 600)))).isoformat(),
        "anonymous_id": draw(unique_ids),
    }
    if draw(st.booleans()):
        event["event_id"] = draw(unique_ids)
    if draw(st.booleans()):
        event["properties"] = draw(_properties)
    if draw(st.integers(0, 9)) == 0:
        event["page_url"] = draw(_long_urls)
    for name in draw(_changes):
        change = draw(st.integers(0, 3))
        if change == 0:
            event.pop(name, None)
        elif name == "timestamp":
            event[name] = draw(times)
        elif name == "context":
            event[name] = draw(_contexts)
        elif name == "page_url":
            event[name] = draw(st.one_of(hostile_values, _long_urls))
        else:
            event[name] = draw(hostile_values)
    return event


native_event = _native_event()
native_batches = st.lists(native_event, max_size=8)


# --- Segment messages ----------------------------------------------------------------------

_segment_properties = st.fixed_dictionaries(
    {},
    optional={
        "price": numbers,
        "quantity": numbers,
        "revenue": numbers,
        "currency": hostile_text,
        "url": hostile_text,
        "query": hostile_text,
        "product_id": st.one_of(hostile_text, numbers),
        "misc": json_values,
    },
)
_segment_contexts = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"userAgent": hostile_text, "screen": st.fixed_dictionaries({"width": numbers})}
    ),
)
_event_names = st.one_of(st.sampled_from(["Order Completed", "Signed Up"]), hostile_text)
_time_fields = st.lists(st.sampled_from(["timestamp", "originalTimestamp", "sentAt"]), max_size=2)
_spoiled_fields = st.lists(
    st.sampled_from(["messageId", "userId", "anonymousId", "type", "event", "traits"]),
    max_size=2,
)
_types = st.sampled_from([*CALLS, "teleport", None])


@st.composite
def _segment_message(draw: st.DrawFn, call: str | None) -> Any:
    """A Segment message, mostly well formed; `call` None: a batch message with a `type`."""
    if draw(st.integers(0, 14)) == 0:
        return draw(hostile_values)
    message: dict[str, Any] = {"messageId": draw(unique_ids)}
    message[draw(st.sampled_from(["userId", "anonymousId"]))] = draw(unique_ids)
    if call is None:
        message["type"] = draw(_types)
    if draw(st.booleans()):
        message["event"] = draw(_event_names)
    if draw(st.booleans()):
        message["properties"] = draw(_segment_properties)
    if draw(st.booleans()):
        message["context"] = draw(_segment_contexts)
    for name in draw(_time_fields):
        message[name] = draw(times)
    for name in draw(_spoiled_fields):
        message[name] = draw(hostile_values)
    return message


segment_batches = st.lists(_segment_message(None), max_size=8)
segment_calls = {call: _segment_message(call) for call in CALLS}


@dataclass
class Body:
    """A request body as sent, and the bytes the collector reads once it is decoded."""

    wire: bytes
    plain: bytes | None  # None: the collector cannot decode it (bad gzip, unknown encoding)
    encoding: str | None


@st.composite
def encoded(draw: st.DrawFn, document: Any) -> Body:
    """The document's bytes, plain or gzipped in one of several ways."""
    text = encode(document, ascii_only=draw(st.booleans()))
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 30)) == 0:
        data += draw(st.sampled_from([b"\xff\xfe", b"}", b",", b"\x00"]))
    how = draw(
        st.sampled_from(["plain"] * 4 + ["gzip", "gzip-two-members"] * 2 + ["gzip-trailing", "br"])
    )
    if how == "plain":
        return Body(data, data, None)
    if how == "gzip":
        return Body(gzip.compress(data), data, "gzip")
    if how == "gzip-two-members":
        cut = int(draw(st.floats(0, 1)) * len(data))  # bounds that do not vary between runs
        return Body(gzip.compress(data[:cut]) + gzip.compress(data[cut:]), data, "gzip")
    if how == "gzip-trailing":
        junk = draw(st.binary(min_size=1, max_size=8).filter(lambda b: b.strip(b"\0")))
        return Body(gzip.compress(data) + junk, None, "gzip")
    return Body(data, None, "br")


@st.composite
def credentials(draw: st.DrawFn) -> tuple[str | None, dict[str, str], str]:
    """(write key, headers, query string) naming a key in one of the accepted ways, a wrong
    key, or none."""
    import base64

    kind = draw(st.integers(0, 19))  # mostly a valid key: bodies must get past the door
    if kind < 15:
        key = "it-open"
    elif kind < 17:
        key = draw(st.sampled_from(["it-shop", "it-limited"]))
    elif kind < 19:
        key = draw(st.sampled_from(["", "nope", "IT-OPEN", "\x00", "it-open\x00"]))
    else:
        key = draw(st.text(max_size=10))
    how = draw(st.sampled_from(["bearer", "basic", "header", "query"] * 4 + ["none", "bad-basic"]))
    # Header values are sent as printable ASCII without edge spaces (servers strip those).
    encodable = bool(key) and key == key.strip() and all(0x21 <= ord(c) < 0x7F for c in key)
    if how == "bearer" and encodable:
        return key, {"Authorization": f"Bearer {key}"}, ""
    if how == "basic" and encodable:
        basic = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        return key.partition(":")[0], {"Authorization": basic}, ""  # the user name is the key
    if how == "header" and encodable:
        return key, {"X-Write-Key": key}, ""
    if how == "bad-basic":
        return None, {"Authorization": "Basic !!not-base64"}, ""
    if how == "none":
        return None, {}, ""
    query = "write_key=" + quote_from_bytes(key.encode("utf-8", "surrogatepass"), safe="")
    return key, {}, query


def source_of(key: str | None) -> str | None:
    return SOURCES.get(key) if key else None


CONTENT_TYPES = st.sampled_from(
    ["application/json"] * 3
    + ["application/json; charset=utf-8", "text/plain;charset=UTF-8", None] * 2
    + ["application/xml", "multipart/form-data"]
)


# --- the ledger ----------------------------------------------------------------------------

EVENT_CODES = frozenset(
    {
        "invalid",
        "not_an_object",
        "event_too_large",
        "properties_too_large",
        "unstorable_text",
        "too_long_to_index",
        "time_out_of_range",
        "too_deeply_nested",
    }
)


@dataclass
class Ledger:
    """What the answers said: the events that must be in Kafka, once each per acceptance,
    and the dead letters there must be."""

    statuses: Counter[int] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    expected: Counter[tuple[str, str]] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)  # by source
    rejected_codes: Counter[str] = field(default_factory=Counter)
    refused_events: int = 0  # events of requests answered 4xx as a whole

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def accept(self, source: str, event_id: str) -> None:
        self.expected[(source, event_id)] += 1


def native_event_id(event: Any, source: str, plain: bytes, index: int) -> str:
    """The id an accepted native event has: its own, else the one derived from the body."""
    given = event.get("event_id") if isinstance(event, dict) else None
    if isinstance(given, str):
        return given
    return derived_event_id(source, hashlib.sha256(plain).digest(), index)


def segment_event_id(message: Any, source: str, plain: bytes, index: int) -> str:
    """Segment's messageId (a non-blank string or integer, stripped, 128 characters at most),
    else the id derived from the body."""
    given = message.get("messageId") if isinstance(message, dict) else None
    if not isinstance(given, bool) and isinstance(given, str | int) and str(given).strip():
        return str(given).strip()[:128]
    return derived_event_id(source, hashlib.sha256(plain).digest(), index)


def pixel_event_id(query: str, source: str) -> str:
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "event_id":
            return value
    return derived_event_id(source, hashlib.sha256(query.encode("latin-1")).digest(), 0)
