"""#12 on the collector's side, one test per item, through the real collector and broker:
wrong clocks, bytes the warehouse cannot store, a huge rejected event, and retries of
bodies without event ids."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest

from clickstream_common.schema import EnrichedEvent
from tests.ingest.conftest import Collector

pytestmark = pytest.mark.platform


def marker() -> str:
    return f"h-{uuid.uuid4().hex[:12]}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def event(who: str, **fields: Any) -> dict[str, Any]:
    return {"event_type": "page_view", "timestamp": now_iso(), "anonymous_id": who, **fields}


def post(collector: Collector, path: str, body: bytes | Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    merged = {"Authorization": "Bearer it-open", "Content-Type": "application/json", **headers}
    return httpx.post(f"{collector.url}{path}", content=content, headers=merged, timeout=30)


def codes(response: httpx.Response) -> dict[int, str]:
    return {r["index"]: r["code"] for r in response.json()["rejected"]}


def test_events_dated_2099_and_9999_keep_their_receive_time(collector: Collector) -> None:
    who = marker()
    body = {
        "events": [
            event(who, event_id=f"{who}-2099", timestamp="2099-01-01T00:00:00Z"),
            event(who, event_id=f"{who}-9999", timestamp="9999-06-01T00:00:00Z"),
            event(who, event_id=f"{who}-now"),
            event(who, event_id=f"{who}-past", timestamp="2001-01-01T00:00:00Z"),
            # Beyond what any reader can hold once converted: refused, named, alone.
            event(who, timestamp="9999-12-31T23:59:59-10:00"),
            event(who, timestamp="0001-01-01T00:00:00+10:00"),
            event(who, timestamp="9999-12-31T23:59:59Z"),
        ]
    }
    response = post(collector, "/v1/events", body)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 4
    assert codes(response) == {
        4: "time_out_of_range",
        5: "time_out_of_range",
        6: "time_out_of_range",
    }
    found = {e["event_id"]: e for e in collector.events_with(anonymous_id=who)}
    assert set(found) == {f"{who}-2099", f"{who}-9999", f"{who}-now", f"{who}-past"}
    for name, bound, original in (
        ("2099", "ahead", "2099-01-01T00:00:00Z"),
        ("9999", "ahead", "9999-06-01T00:00:00Z"),
        ("past", "behind", "2001-01-01T00:00:00Z"),
    ):
        adjusted = found[f"{who}-{name}"]
        assert adjusted["event_time"] == adjusted["received_at"], name
        assert adjusted["event_time_adjusted"] == bound
        assert adjusted["original_event_time"] == original
        assert adjusted["timestamp"] == original  # the client's field as it was sent
        EnrichedEvent.model_validate(adjusted)
    normal = found[f"{who}-now"]
    assert normal["event_time"] == normal["timestamp"] and "event_time_adjusted" not in normal
    metrics = httpx.get(f"{collector.url}/metrics").text
    assert 'ingest_event_time_adjusted_total{bound="ahead"}' in metrics


@pytest.mark.parametrize(
    "edge", ["9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+10:00", "9999-12-31T23:59:59Z"]
)
def test_edge_times_in_every_time_field_are_answered_below_500(
    collector: Collector, edge: str
) -> None:
    who = marker()
    native = post(collector, "/v1/events", {"sent_at": edge, "events": [event(who)]})
    assert (native.status_code, native.json()["code"]) == (400, "invalid_sent_at")
    # Segment's sentAt only corrects clocks: an unreadable one is ignored, as Segment does.
    segment = post(
        collector,
        "/v1/batch",
        {
            "sentAt": edge,
            "batch": [
                {"type": "track", "event": "A", "anonymousId": who, "sentAt": edge},
                {"type": "track", "event": "B", "anonymousId": who, "originalTimestamp": edge},
            ],
        },
    )
    assert segment.status_code == 200, segment.text
    assert segment.json()["accepted"] == 1 and codes(segment) == {1: "time_out_of_range"}
    pixel = httpx.get(
        f"{collector.url}/v1/pixel.gif",
        params={"write_key": "it-open", "anonymous_id": who, "timestamp": edge},
    )
    assert (pixel.status_code, pixel.json()["code"]) == (400, "time_out_of_range")
    assert [e["properties"]["segment_event"] for e in collector.events_with(anonymous_id=who)] == [
        "A"
    ]


def test_nul_and_oversized_fields_affect_only_their_own_event(collector: Collector) -> None:
    who = marker()
    good = [event(who, event_id=f"{who}-{n}") for n in range(2)]
    bad = [
        event(who, user_id="u\x00"),
        event(who, properties={"note\x00": 1}),
        event(who, page_url="https://shop.example/" + "é" * 1100),  # 2218 bytes in UTF-8
        event(who, properties={"n": [[[[[[[[{"deep": "ok"}]]]]]]]]}),  # accepted: not too deep
    ]
    text = orjson.dumps({"events": [good[0], *bad, good[1]]})
    assert text.endswith(b"]}")
    # A lone surrogate (as JSON escapes it) and bytes that are not UTF-8, in two more events.
    head = b'{"event_type":"click","timestamp":"%s","anonymous_id":"%s",' % (
        now_iso().encode(),
        who.encode(),
    )
    text = text[:-2] + b"," + head + b'"user_id":"\\ud800"},' + head + b'"session_id":"\xff"}]}'
    response = post(collector, "/v1/events", text)
    assert response.status_code == 202, response.text
    assert codes(response) == {
        1: "unstorable_text",
        2: "unstorable_text",
        3: "too_long_to_index",
        6: "unstorable_text",
        7: "unstorable_text",
    }
    reasons = {r["index"]: r["reason"] for r in response.json()["rejected"]}
    assert reasons[1].startswith("user_id: holds a NUL character")
    assert "page_url" in reasons[3] and "2048" in reasons[3]
    stored = collector.events_with(anonymous_id=who)
    assert len(stored) == 3 and {f"{who}-0", f"{who}-1"} <= {e["event_id"] for e in stored}

    # The same through Segment and the pixel.
    segment = post(
        collector,
        "/v1/batch",
        {
            "batch": [
                {"type": "track", "event": "Fine", "anonymousId": who, "messageId": f"{who}-s"},
                {"type": "track", "event": "Nul\x00", "anonymousId": who},
                {
                    "type": "page",
                    "anonymousId": who,
                    "properties": {"url": "https://x/" + "€" * 700},
                },
            ]
        },
    )
    assert segment.status_code == 200
    assert codes(segment) == {1: "unstorable_text", 2: "too_long_to_index"}
    pixel = httpx.get(
        f"{collector.url}/v1/pixel.gif?write_key=it-open&anonymous_id={who}&p.note=a%00b"
    )
    assert (pixel.status_code, pixel.json()["code"]) == (400, "unstorable_text")
    assert len(collector.events_with(anonymous_id=who)) == 4


def test_a_1_mib_rejected_event_causes_no_duplicate(collector: Collector) -> None:
    who = marker()
    valid = [event(who, event_id=f"{who}-{n}") for n in range(3)]
    huge = event(who, properties={"blob": "z" * 1_000_000})
    body = orjson.dumps({"events": [valid[0], huge, valid[1], valid[2]]})
    assert 1_000_000 < len(body) <= 1024 * 1024
    response = post(collector, "/v1/events", body)
    assert response.status_code == 202, response.text
    assert codes(response) == {1: "event_too_large"}
    ids = [e["event_id"] for e in collector.events_with(anonymous_id=who)]
    assert sorted(ids) == [f"{who}-0", f"{who}-1", f"{who}-2"]  # each once
    request_id = response.headers["x-request-id"]
    (letter,) = [r for r in collector.dead_letters() if r.value["request_id"] == request_id]
    assert letter.size < 16 * 1024  # far below Kafka's 1 MiB record limit
    assert letter.value["event_bytes"] == len(orjson.dumps(huge))
    assert "event" not in letter.value and letter.value["event_excerpt"].startswith("{")

    # A Segment message of about 1 MiB that cannot be mapped: the same.
    message = {"type": "teleport", "anonymousId": who, "properties": {"blob": "q" * 1_000_000}}
    fine = {"type": "track", "event": "Fine", "anonymousId": who, "messageId": f"{who}-s"}
    segment = post(
        collector,
        "/v1/batch",
        gzip.compress(orjson.dumps({"batch": [fine, message]})),
        **{"Content-Encoding": "gzip"},
    )
    assert segment.status_code == 200 and codes(segment) == {1: "invalid"}
    assert len(collector.events_with(anonymous_id=who)) == 4


def test_a_retried_body_without_event_ids_gets_the_same_ids(collector: Collector) -> None:
    who = marker()
    body = orjson.dumps(
        {"sent_at": now_iso(), "events": [event(who), event(who, event_type="click")]}
    )
    first = post(collector, "/v1/events", body)
    # The retry comes gzipped this time: the ids come from the body as the collector reads it.
    again = post(collector, "/v1/events", gzip.compress(body), **{"Content-Encoding": "gzip"})
    assert first.status_code == again.status_code == 202
    stored = collector.events_with(anonymous_id=who)
    assert len(stored) == 4
    ids = [e["event_id"] for e in stored]
    assert len(set(ids)) == 2  # two events, each twice with the same id
    by_id = {}
    for stored_event in stored:
        by_id.setdefault(stored_event["event_id"], set()).add(stored_event["event_type"])
    assert sorted(types for values in by_id.values() for types in values) == ["click", "page_view"]
    assert all(len(types) == 1 for types in by_id.values())
    # The pixel's "body" is its query: the same query twice, the same id.
    query = f"write_key=it-open&anonymous_id={quote(who)}-px&event_type=email_open"
    for _ in range(2):
        assert httpx.get(f"{collector.url}/v1/pixel.gif?{query}").status_code == 200
    pixels = collector.events_with(anonymous_id=f"{who}-px")
    assert len(pixels) == 2 and pixels[0]["event_id"] == pixels[1]["event_id"]
    # A different body is a different event, even with the same fields (a new timestamp).
    other = orjson.dumps(
        {"events": [event(who, timestamp=(datetime.now(UTC) - timedelta(seconds=1)).isoformat())]}
    )
    assert post(collector, "/v1/events", other).status_code == 202
    assert len({e["event_id"] for e in collector.events_with(anonymous_id=who)}) == 3
