import gzip
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from clickstream_common.schema import EnrichedEvent
from ingest_api.enrichment import RequestFacts
from ingest_api.errors import ApiError
from ingest_api.intake import Candidate, Limits, native_events, process, read_limited
from ingest_api.pixel import event_from_query

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LIMITS = Limits(max_events=3, max_request_bytes=1000, max_event_bytes=300, max_properties_bytes=100)
FACTS = RequestFacts("web", T0, None, None, timedelta(seconds=2), timedelta(days=7))


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read(body: bytes, encoding: str | None = None, declared: str | None = None) -> bytes:
    return await read_limited(chunks(body[:7], body[7:]), declared, encoding, 1000)


async def test_plain_and_gzip_bodies_are_read() -> None:
    body = b'{"a": 1}' * 10
    assert await read(body) == body
    assert await read(gzip.compress(body), "gzip") == body


@pytest.mark.parametrize(
    ("body", "encoding", "declared", "status", "code"),
    [
        (b"x" * 1001, None, None, 413, "request_too_large"),
        (b"x", None, "5000", 413, "request_too_large"),
        # A small gzip that inflates past the limit is refused without inflating it all.
        (gzip.compress(b" " * 10_000_000), "gzip", None, 413, "request_too_large"),
        (b"not gzip at all", "gzip", None, 400, "invalid_gzip"),
        (gzip.compress(b"{}" * 100)[:-12], "gzip", None, 400, "invalid_gzip"),
        (b"{}", "br", None, 415, "unsupported_encoding"),
    ],
)
async def test_bodies_over_limits_or_broken_are_refused(
    body: bytes, encoding: str | None, declared: str | None, status: int, code: str
) -> None:
    with pytest.raises(ApiError) as caught:
        await read(body, encoding, declared)
    assert (caught.value.status_code, caught.value.code) == (status, code)
    if status == 413:
        assert "INGEST_MAX_REQUEST_BYTES" in caught.value.message


def test_batches_and_single_events() -> None:
    sent_at, events, is_batch = native_events(
        {"sent_at": "2026-11-27T12:00:00Z", "events": [{}, {}]}, LIMITS
    )
    assert (sent_at, len(events), is_batch) == (T0, 2, True)
    assert native_events({"event_type": "click"}, LIMITS)[1:] == ([{"event_type": "click"}], False)
    with pytest.raises(ApiError) as caught:
        native_events({"events": [{}] * 4}, LIMITS)
    assert caught.value.status_code == 413 and "INGEST_MAX_EVENTS_PER_REQUEST" in str(caught.value)
    for bad in ([], "x", {"events": {}}, {"events": []}, {"events": [], "sent_at": "nope"}):
        with pytest.raises(ApiError) as caught:
            native_events(bad, LIMITS)
        assert caught.value.status_code == 400


def test_each_event_is_judged_on_its_own() -> None:
    good = {"event_type": "click", "timestamp": "2026-11-27T11:00:00Z", "user_id": "u1"}
    events = [
        good,
        "not an object",
        {**good, "properties": {"x": "y" * 200}},
        {**good, "search_query": "q" * 400},
        {**good, "currency": "euro"},
        {**good, "user_id": None},
    ]
    outcome = process([Candidate(e, e, None) for e in events], FACTS, LIMITS, "rid", "events")
    assert len(outcome.accepted) == 1
    codes = {index: code for index, code, _ in outcome.rejected}
    assert codes == {
        1: "not_an_object",
        2: "properties_too_large",
        3: "event_too_large",
        4: "invalid",
        5: "invalid",
    }
    key, value = outcome.accepted[0]
    assert key == b"u1"
    assert EnrichedEvent.model_validate_json(value).source == "web"
    letters = [orjson.loads(v) for _, v in outcome.dead]
    assert [letter["index"] for letter in letters] == [1, 2, 3, 4, 5]
    assert letters[3]["reason"].startswith("currency:")
    assert (
        letters[4]["reason"]
        == "event: Value error, at least one of user_id or anonymous_id is required"
    )
    assert letters[0] | {"reason": ""} == {
        "reason": "",
        "code": "not_an_object",
        "index": 1,
        "source": "web",
        "endpoint": "events",
        "request_id": "rid",
        "received_at": "2026-11-27T12:00:00Z",
        "event": "not an object",
    }


def test_pixel_query_becomes_an_event() -> None:
    event = event_from_query(
        [
            ("write_key", "k"),
            ("anonymous_id", "a1"),
            ("event_type", "email_open"),
            ("p.campaign", "spring"),
            ("properties", '{"list": "vip"}'),
            ("price", "9.5"),
            ("cb", "123"),
        ],
        T0,
    )
    assert event == {
        "anonymous_id": "a1",
        "event_type": "email_open",
        "price": "9.5",
        "properties": {"list": "vip", "campaign": "spring"},
        "timestamp": T0.isoformat(),
    }
    assert event_from_query([("user_id", "u")], T0)["event_type"] == "page_view"
