"""Property-based fuzzing of every route against a real collector and a real Kafka broker.

Hypothesis draws hostile requests (strategies in hostile.py: edge datetimes, nesting to
1100 levels, NUL and lone surrogates, bytes that are not UTF-8, huge strings and arrays,
wrong types, gzip with extra members or trailing bytes, unknown encodings, bad write keys).
Every answer must be below 500. The answers are kept in a ledger, and at the end the topics
are read back: every event a 2xx named as accepted is in Kafka exactly once, nothing else
is there, and every rejection named in an answer left one bounded dead letter.

INGEST_FUZZ_REQUESTS (default 10,000) sets how many requests are sent in all.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from clickstream_common.schema import INDEX_KEY_MAX_BYTES, EnrichedEvent, unstorable_text
from ingest_api.config import Settings
from tests.ingest.conftest import Collector, quiet_collector
from tests.ingest.hostile import (
    CALLS,
    CONTENT_TYPES,
    EVENT_CODES,
    Body,
    Ledger,
    credentials,
    encoded,
    hostile_text,
    hostile_values,
    json_values,
    native_batches,
    native_event,
    native_event_id,
    pixel_event_id,
    segment_batches,
    segment_calls,
    segment_event_id,
    source_of,
    times,
    unique_ids,
)

pytestmark = pytest.mark.platform

REQUESTS = int(os.environ.get("INGEST_FUZZ_REQUESTS", "10000"))
SHARES = {"native": 0.4, "segment_batch": 0.2, "segment_call": 0.15, "pixel": 0.15, "other": 0.1}
LEDGER = Ledger()
DEFAULTS = Settings()
# A dead letter keeps the whole original up to the event limit, else a 4 KiB excerpt.
MAX_LETTER_BYTES = DEFAULTS.ingest_max_event_bytes + 8 * 1024
MAX_RECORD_BYTES = DEFAULTS.ingest_max_event_bytes + 8 * 1024


def examples(route: str) -> int:
    return max(1, round(REQUESTS * SHARES[route]))


def fuzz_settings(route: str) -> Any:
    return settings(
        max_examples=examples(route),
        deadline=None,
        derandomize=True,  # the same requests on every run, so a failure reproduces
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],
    )


@pytest.fixture(scope="module")
def target(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    with quiet_collector(kafka_bootstrap, tmp_path_factory.mktemp("fuzz")) as collector:
        yield collector


@pytest.fixture(scope="module")
def client(target: Collector) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=target.url, timeout=60) as session:
        yield session


def send(client: httpx.Client, method: str, url: str, route: str, **kwargs: Any) -> httpx.Response:
    response = client.request(method, url, **kwargs)
    LEDGER.statuses[response.status_code] += 1
    LEDGER.by_route[route] += 1
    assert response.status_code < 500, (method, url[:200], response.text[:500])
    return response


def body_headers(data: st.DataObject, body: Body, headers: dict[str, str]) -> dict[str, str]:
    headers = dict(headers)
    content_type = data.draw(CONTENT_TYPES)
    if content_type:
        headers["Content-Type"] = content_type
    if body.encoding:
        headers["Content-Encoding"] = body.encoding
    if data.draw(st.integers(0, 9)) == 0:
        headers["Origin"] = data.draw(
            st.sampled_from(["https://shop.example", "https://evil.example", "null"])
        )
    return headers


def per_event_results(response: httpx.Response) -> dict[str, Any] | None:
    """The per-event answer ({accepted, rejected}) when the request was read, else None."""
    if response.status_code not in (200, 202, 400):
        return None
    document = response.json()
    if "accepted" not in document:
        assert set(document) == {"code", "message", "detail"}, document
        return None
    return dict(document)


def account(
    results: dict[str, Any], source: str, events: list[Any], ids: Any, plain: bytes
) -> None:
    """Note what a per-event answer promises: the accepted events (by id) in Kafka, and a
    dead letter for each rejected one."""
    rejected = {r["index"]: r["code"] for r in results["rejected"]}
    assert results["accepted"] == len(events) - len(rejected), results
    assert set(rejected) <= set(range(len(events)))
    for index, event in enumerate(events):
        if index in rejected:
            assert rejected[index] in EVENT_CODES, rejected[index]
            LEDGER.rejected_codes[rejected[index]] += 1
        else:
            LEDGER.accept(source, ids(event, source, plain, index))
    LEDGER.dead_letters[source] += len(rejected)


# --- the native API -------------------------------------------------------------------------


@fuzz_settings("native")
@given(data=st.data())
def test_native_api(client: httpx.Client, data: st.DataObject) -> None:
    key, headers, query = data.draw(credentials())
    shape = data.draw(
        st.sampled_from(["batch"] * 6 + ["single"] * 3 + ["anything", "too_many", "big"])
    )
    if shape == "batch":
        document: Any = {"events": data.draw(native_batches)}
        if data.draw(st.booleans()):
            document["sent_at"] = data.draw(times)
    elif shape == "single":
        document = data.draw(native_event)
    elif shape == "too_many":
        document = {"events": [data.draw(native_event)] * 501}
    elif shape == "big":  # an event of about 1 MiB between valid ones
        size = data.draw(st.integers(900_000, 1_050_000))
        valid = data.draw(native_event)
        document = {"events": [valid, {"properties": {"blob": "z" * size}}, valid]}
    else:
        document = data.draw(hostile_values)
    body = data.draw(encoded(document))
    url = "/v1/events" + (f"?{query}" if query else "")
    response = send(
        client, "POST", url, "native", content=body.wire, headers=body_headers(data, body, headers)
    )
    results = per_event_results(response)
    if results is None:
        return
    source = source_of(key)
    assert source and body.plain is not None, (key, response.text[:300])
    batch = isinstance(document, dict) and "events" in document
    events = document["events"] if batch else [document]
    account(results, source, events, native_event_id, body.plain)


# --- the Segment API ------------------------------------------------------------------------


def segment_source(key: str | None, document: Any) -> str | None:
    """The source of the key that counts: one named by a header or the query, else (none,
    or an unreadable one) the body's `writeKey`."""
    if key:
        return source_of(key)
    body_key = document.get("writeKey") if isinstance(document, dict) else None
    return source_of(body_key) if isinstance(body_key, str) else None


@fuzz_settings("segment_batch")
@given(data=st.data())
def test_segment_batch(client: httpx.Client, data: st.DataObject) -> None:
    key, headers, query = data.draw(credentials())
    if data.draw(st.integers(0, 9)) == 0:
        document: Any = data.draw(hostile_values)
    else:
        document = {"batch": data.draw(segment_batches)}
        if data.draw(st.booleans()):
            document["sentAt"] = data.draw(times)
        if data.draw(st.booleans()):
            document["context"] = data.draw(json_values)
        if data.draw(st.booleans()):
            document["writeKey"] = data.draw(st.sampled_from(["it-open", "nope", 5, None]))
    results, body = post_segment(client, data, "/v1/batch", query, headers, document)
    if results is None:
        return
    assert results["success"] == (not results["rejected"])
    source = segment_source(key, document)
    assert source and body.plain is not None
    account(results, source, document["batch"], segment_event_id, body.plain)


@fuzz_settings("segment_call")
@given(data=st.data())
def test_segment_single_calls(client: httpx.Client, data: st.DataObject) -> None:
    key, headers, query = data.draw(credentials())
    call = data.draw(st.sampled_from(CALLS))
    document = data.draw(segment_calls[call])
    if isinstance(document, dict) and data.draw(st.integers(0, 4)) == 0:
        document["writeKey"] = "it-open"
    results, body = post_segment(client, data, f"/v1/{call}", query, headers, document)
    if results is None:
        return
    source = segment_source(key, document)
    assert source and body.plain is not None
    account(results, source, [document], segment_event_id, body.plain)


def post_segment(
    client: httpx.Client,
    data: st.DataObject,
    path: str,
    query: str,
    headers: dict[str, str],
    document: Any,
) -> tuple[dict[str, Any] | None, Body]:
    """Send a Segment body; its per-message answer (always a 200 when there is one)."""
    body = data.draw(encoded(document))
    url = path + (f"?{query}" if query else "")
    route = "segment_batch" if path == "/v1/batch" else "segment_call"
    response = send(
        client, "POST", url, route, content=body.wire, headers=body_headers(data, body, headers)
    )
    results = per_event_results(response)
    assert results is None or response.status_code == 200
    return results, body


# --- the pixel ------------------------------------------------------------------------------

PIXEL_FIELDS = [
    "event_id",
    "event_type",
    "timestamp",
    "user_id",
    "anonymous_id",
    "page_url",
    "quantity",
    "price",
    "currency",
    "properties",
    "p.note",
    "cb",
]


_pixel_properties = st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)
_pixel_fields = st.lists(st.sampled_from(PIXEL_FIELDS), max_size=4, unique=True)


def pixel_value(draw: st.DrawFn, name: str) -> bytes:
    if name == "timestamp":
        value = draw(times)
        text = value if isinstance(value, str) else json.dumps(value)
    elif name == "properties":
        text = orjson.dumps(draw(_pixel_properties)).decode()
        text = draw(st.sampled_from([text, '{"a": "\\u0000"}', "[1]", "{"]))
    else:
        text = draw(hostile_text)
    # Up to 6 KB a value: a query of several can pass INGEST_MAX_HEADER_BYTES (431), and
    # stays within what the HTTP client sends (64 KiB).
    raw = text.encode("utf-8", "surrogatepass")[:6000]
    return draw(st.sampled_from([raw, raw, raw + b"\xff", b"a\x00b"]))


@fuzz_settings("pixel")
@given(data=st.data())
def test_pixel(client: httpx.Client, data: st.DataObject) -> None:
    key, headers, query = data.draw(credentials())
    parts = [query] if query else []
    if data.draw(st.integers(0, 4)):
        parts.append(f"anonymous_id=px-{data.draw(st.integers(0, 10**6))}")
    for name in data.draw(_pixel_fields):
        value = pixel_value(data.draw, name)
        parts.append(
            f"{quote_from_bytes(name.encode(), safe='')}={quote_from_bytes(value, safe='')}"
        )
    if data.draw(st.booleans()):
        parts.append(f"event_id={data.draw(unique_ids)}")
    full_query = "&".join(parts)
    response = send(client, "GET", f"/v1/pixel.gif?{full_query}", "pixel", headers=headers)
    account_pixel(response, source_of(key), full_query)


def account_pixel(response: httpx.Response, source: str | None, query: str) -> None:
    """A pixel's answer: the GIF for an event in Kafka, or a 400 naming why it is not (it is
    a dead letter then)."""
    if response.status_code == 200:
        assert response.content.startswith(b"GIF89a") and source
        LEDGER.accept(source, pixel_event_id(query, source))
    elif response.status_code == 400 and response.json()["code"] in EVENT_CODES:
        assert source
        LEDGER.dead_letters[source] += 1
        LEDGER.rejected_codes[response.json()["code"]] += 1


# --- every other route and method -----------------------------------------------------------

OTHER_PATHS = ["/healthz", "/readyz", "/metrics", "/v1/tracker.js", "/openapi.json", "/docs"]


@fuzz_settings("other")
@given(data=st.data())
def test_other_routes_and_methods(client: httpx.Client, data: st.DataObject) -> None:
    path = data.draw(
        st.one_of(
            st.sampled_from(
                [*OTHER_PATHS, "/v1/events", "/v1/batch", "/v1/pixel.gif", "/v1/track"]
            ),
            st.text(max_size=30).map(
                lambda t: "/" + quote_from_bytes(t.encode("utf-8", "surrogatepass"), safe="/")
            ),
        )
    )
    method = data.draw(
        st.sampled_from(["GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "POST", "TRACE"])
    )
    headers: dict[str, str] = {}
    if data.draw(st.booleans()):
        headers["Origin"] = data.draw(
            st.sampled_from(["https://shop.example", "https://a.example", "null"])
        )
        if method == "OPTIONS":
            headers["Access-Control-Request-Method"] = "POST"
    if data.draw(st.booleans()):
        headers["If-None-Match"] = data.draw(st.sampled_from(['"x"', "*", ""]))
    key = None
    if data.draw(st.booleans()):
        key = data.draw(st.sampled_from(["it-open", "it-shop", "nope"]))
    content = data.draw(
        st.one_of(st.just(b""), st.binary(max_size=64), st.sampled_from([b"{}", b"[]", b"5"]))
    )
    if method in ("GET", "HEAD", "OPTIONS", "TRACE"):
        content = b""
    url = path + (f"?write_key={key}" if key else "")
    response = send(client, method, url, "other", headers=headers, content=content)
    if method == "GET" and path == "/v1/pixel.gif":
        account_pixel(response, source_of(key), url.partition("?")[2])
    # A stray body that is JSON reaches a collecting route: its rejections are dead letters.
    results = per_event_results(response) if method == "POST" else None
    if results is not None:
        source = source_of(key)
        assert results["accepted"] == 0 and source
        LEDGER.dead_letters[source] += len(results["rejected"])


# --- what the answers promised --------------------------------------------------------------


def test_kafka_holds_exactly_what_the_answers_promised(target: Collector) -> None:
    """Runs after the fuzzing: every accepted event once, nothing else, a dead letter per
    rejection, and every record valid, storable and bounded."""
    statuses = dict(sorted(LEDGER.statuses.items()))
    print(
        f"\nfuzz: {LEDGER.requests} requests by route {dict(LEDGER.by_route)}; "
        f"statuses {statuses}; events accepted {sum(LEDGER.expected.values())}; "
        f"rejected by code {dict(LEDGER.rejected_codes)}"
    )
    assert LEDGER.requests >= REQUESTS
    assert not [status for status in LEDGER.statuses if status >= 500]
    # Enough of each kind of answer that the checks below are not empty.
    assert LEDGER.statuses[202] and LEDGER.statuses[200] and LEDGER.statuses[400]
    assert LEDGER.statuses[401] and LEDGER.statuses[413] and LEDGER.statuses[415]

    records = target.events()
    found = Counter((r.value["source"], r.value["event_id"]) for r in records)
    missing = LEDGER.expected - found
    extra = found - LEDGER.expected
    assert not missing, f"{sum(missing.values())} accepted events not in Kafka: {list(missing)[:5]}"
    assert not extra, f"{sum(extra.values())} records nobody was told of: {list(extra)[:5]}"
    for record in records:
        assert record.size <= MAX_RECORD_BYTES
        event = EnrichedEvent.model_validate(record.value)
        assert unstorable_text(record.value) is None
        if event.page_url:
            assert len(event.page_url.encode()) <= INDEX_KEY_MAX_BYTES
        ahead = event.event_time - event.received_at
        assert -DEFAULTS.clock_policy.max_behind <= ahead <= DEFAULTS.clock_policy.max_ahead

    letters = target.dead_letters()
    assert Counter(r.value["source"] for r in letters) == LEDGER.dead_letters
    assert max(r.size for r in letters) <= MAX_LETTER_BYTES
    assert all(r.value["code"] in EVENT_CODES and r.value["event_sha256"] for r in letters)
    print(
        f"fuzz: {len(records)} events in Kafka, each once; {len(letters)} dead letters, the "
        f"largest {max(r.size for r in letters)} bytes"
    )
