import gzip
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from clickstream_common.schema import DEFAULT_CLOCK_POLICY, EnrichedEvent, Event
from ingest_api.enrichment import RequestFacts
from ingest_api.errors import ApiError
from ingest_api.intake import (
    DEAD_LETTER_EXCERPT_BYTES,
    REASON_MAX_LENGTH,
    Batch,
    Candidate,
    Limits,
    derived_event_id,
    describe,
    echo,
    json_text,
    load_json,
    native_events,
    parse_body,
    process,
    read_limited,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LIMITS = Limits(max_events=3, max_request_bytes=1000, max_event_bytes=300, max_properties_bytes=100)
FACTS = RequestFacts(
    "web", T0, None, None, timedelta(seconds=2), timedelta(days=7), DEFAULT_CLOCK_POLICY
)
BATCH = Batch(b"\x00" * 32, check_text=False)


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
    outcome = process(
        [Candidate(e, e, None) for e in events], FACTS, LIMITS, "rid", "events", BATCH
    )
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
        "event_bytes": len(b'"not an object"'),
        "event_sha256": hashlib.sha256(b'"not an object"').hexdigest(),
    }


async def test_gzip_members_are_read_in_turn_and_trailing_garbage_is_refused() -> None:
    one, two = b'{"events": [', b"{}]}"
    assert await read(gzip.compress(one) + gzip.compress(two), "gzip") == one + two
    assert await read(gzip.compress(one + two) + b"\0" * 8, "gzip") == one + two
    with pytest.raises(ApiError) as caught:
        await read(gzip.compress(one + two) + b"trailing", "gzip")
    assert caught.value.code == "invalid_gzip"
    assert "after the last gzip member" in caught.value.message
    # Each member counts against the limit: two small bombs are refused too.
    bomb = gzip.compress(b" " * 600)
    with pytest.raises(ApiError) as caught:
        await read(bomb + bomb, "gzip")
    assert caught.value.code == "request_too_large"


def test_json_that_orjson_refuses_for_its_text_is_read_leniently() -> None:
    assert load_json(b'{"a": 1}') == ({"a": 1}, False)
    assert load_json(b'{"a": "\\ud800x"}') == ({"a": "\ud800x"}, True)
    assert load_json(b'{"a": "\xff"}') == ({"a": "\udcff"}, True)  # bytes not UTF-8
    assert load_json(b"[123456789012345678901234567890]")[0] == [1.2345678901234568e29]
    for broken in (b"{", b"[NaN]", b"[1e400]", b"[Infinity]", b'{"a": "\x01"}', b"[" * 2000):
        with pytest.raises(ApiError) as caught:
            load_json(broken)
        assert caught.value.code == "malformed_json", broken[:20]


def test_parse_body_flags_bodies_that_may_hold_unstorable_text() -> None:
    plain = b'{"a": "caf\\u00e9"}'
    assert parse_body(plain)[1] == Batch(hashlib.sha256(plain).digest(), check_text=False)
    for body in (b'{"a": "\\u0000"}', b'{"a": "\\uD83D\\uDE00"}', b'{"a": "\xff"}'):
        assert parse_body(body)[1].check_text, body


WIDE = Limits(
    max_events=10, max_request_bytes=2**20, max_event_bytes=2**15, max_properties_bytes=2**14
)


def judge(*events: Any, check_text: bool = True) -> Any:
    batch = Batch(b"\x01" * 32, check_text)
    return process([Candidate(e, e, None) for e in events], FACTS, WIDE, "r", "events", batch)


GOOD = {"event_type": "click", "timestamp": "2026-11-27T11:00:00Z", "user_id": "u1"}


@pytest.mark.parametrize(
    ("fields", "code", "named"),
    [
        ({"user_id": "a\x00b"}, "unstorable_text", "user_id: holds a NUL character"),
        ({"properties": {"k\x00": 1}}, "unstorable_text", "the name holds a NUL"),
        ({"properties": {"k": ["\ud800"]}}, "unstorable_text", "properties.k[0]: holds a lone"),
        ({"page_url": "https://s.example/" + "é" * 1100}, "too_long_to_index", "page_url"),
        ({"timestamp": "9999-12-31T23:59:59-10:00"}, "time_out_of_range", "timestamp"),
        ({"timestamp": "0001-01-01T00:00:00+10:00"}, "time_out_of_range", "timestamp"),
        ({"properties": {"deep": json.loads("[" * 300 + "]" * 300)}}, "too_deeply_nested", ""),
    ],
)
def test_hostile_values_refuse_only_their_own_event(
    fields: dict[str, Any], code: str, named: str
) -> None:
    outcome = judge(GOOD, {**GOOD, **fields}, GOOD)
    assert outcome.accepted_count == 2
    ((index, found, reason),) = outcome.rejected
    assert (index, found) == (1, code)
    assert named in reason
    (letter,) = [orjson.loads(v) for _, v in outcome.dead]
    assert letter["code"] == code and letter["event_sha256"]


def test_unstorable_text_is_only_looked_for_when_the_body_may_hold_it() -> None:
    # parse_body never leaves NUL in a body it did not flag; unflagged, no walk is made ...
    assert judge({**GOOD, "user_id": "a\x00b"}, check_text=False).accepted_count == 1
    # ... though what orjson cannot write is still named for what it is.
    outcome = judge({**GOOD, "user_id": "a\ud800"}, check_text=False)
    assert [code for _, code, _ in outcome.rejected] == ["unstorable_text"]


def test_reasons_are_bounded_and_printable() -> None:
    outcome = judge({**GOOD, **{f"extra_field_{i}": i for i in range(200)}})
    ((_, code, reason),) = outcome.rejected
    assert code == "invalid" and len(reason) == REASON_MAX_LENGTH
    with pytest.raises(ValidationError) as caught:
        Event.model_validate({**GOOD, "x\x00" * 50: 1})
    code, reason = describe(caught.value)
    assert code == "invalid" and "\x00" not in reason and "\ufffd" in reason
    assert len(reason.split(":")[0]) == 64  # a field name is shown up to 64 characters


def test_events_without_an_id_get_one_from_source_body_and_position() -> None:
    first = judge(GOOD, GOOD, {**GOOD, "event_id": "mine"})
    again = judge(GOOD, GOOD, {**GOOD, "event_id": "mine"})
    ids = [orjson.loads(v)["event_id"] for _, v in first.accepted]
    assert ids == [orjson.loads(v)["event_id"] for _, v in again.accepted]
    assert len(set(ids)) == 3 and ids[2] == "mine"
    assert ids[0] == derived_event_id("web", b"\x01" * 32, 0)
    assert derived_event_id("web", b"\x01" * 32, 0) != derived_event_id("app", b"\x01" * 32, 0)
    assert derived_event_id("web", b"\x02" * 32, 0) != ids[0]
    uuid.UUID(ids[0])


def test_dead_letters_keep_a_bounded_copy_with_size_and_hash() -> None:
    huge = {**GOOD, "properties": {"blob": "x" * 1_000_000}}
    outcome = judge(huge)
    ((_, value),) = outcome.dead
    assert len(value) < DEAD_LETTER_EXCERPT_BYTES + 2000
    letter = orjson.loads(value)
    whole = orjson.dumps(huge)
    assert letter["event_bytes"] == len(whole)
    assert letter["event_sha256"] == hashlib.sha256(whole).hexdigest()
    assert whole.decode().startswith(letter["event_excerpt"])
    assert "event" not in letter


def test_echo_keeps_small_originals_whole_and_writes_what_orjson_cannot() -> None:
    assert echo({"a": 1}, 100)["event"] == {"a": 1}
    surrogate = echo({"a": "\ud800"}, 100)
    assert surrogate["event_text"] == '{"a":"\\ud800"}'
    deep = orjson.loads("[" * 1000 + "]" * 1000)
    assert echo(deep, 100_000)["event_text"] == "[" * 1000 + "]" * 1000
    assert json_text({"a": [1, "x", None, True, {"b": 2.5}], "c": {}}) == (
        '{"a":[1,"x",null,true,{"b":2.5}],"c":{}}'
    )


def test_the_clock_policy_applies_after_the_skew_correction() -> None:
    future = {**GOOD, "timestamp": "2099-01-01T00:00:00Z"}
    past = {**GOOD, "timestamp": "2001-01-01T00:00:00Z"}
    slightly = {**GOOD, "timestamp": "2026-11-27T12:00:30Z"}  # 30 s ahead: kept
    outcome = judge(future, past, slightly, {**GOOD, "timestamp": "9999-06-01T00:00:00Z"})
    events = [orjson.loads(v) for _, v in outcome.accepted]
    assert [e.get("event_time_adjusted") for e in events] == ["ahead", "behind", None, "ahead"]
    assert [e["event_time"] for e in events[:2]] == ["2026-11-27T12:00:00Z"] * 2
    assert events[0]["original_event_time"] == "2099-01-01T00:00:00Z"
    assert events[0]["timestamp"] == "2099-01-01T00:00:00Z" and events[0]["future_dated"]
    assert events[2]["event_time"] == "2026-11-27T12:00:30Z"
    assert outcome.adjusted == {"ahead": 2, "behind": 1}
    for event in events:
        EnrichedEvent.model_validate(event)


def test_an_unreadable_sent_at_is_named() -> None:
    with pytest.raises(ApiError) as caught:
        native_events({"sent_at": "0001-01-01T00:00:00+10:00", "events": [{}]}, LIMITS)
    assert (caught.value.code, caught.value.message.split(":")[0]) == ("invalid_sent_at", "sent_at")
    assert "time out of range" in caught.value.message


def test_an_original_nested_to_the_limit_still_makes_a_writable_letter() -> None:
    # 254 levels pass on their own, and would be one too many inside the letter.
    event = {**GOOD, "page_url": orjson.loads("[" * 253 + "]" * 253)}
    orjson.dumps(event)
    outcome = judge(event)
    ((_, code, _),) = outcome.rejected
    ((_, value),) = outcome.dead
    letter = orjson.loads(value)
    assert code == "invalid" and "event" not in letter
    assert letter["event_text"].startswith('{"event_type"')


def test_context_fields_the_schema_drops_are_not_judged() -> None:
    ignored = {"library": {"name": "x\x00"}, "note\ud800": 1}
    outcome = judge({**GOOD, "context": {"locale": "de", **ignored}})
    assert outcome.accepted_count == 1
    ((_, value),) = outcome.accepted
    assert orjson.loads(value)["context"] == {"locale": "de"}
    refused = judge({**GOOD, "context": {"locale": "d\x00e", **ignored}})
    assert [code for _, code, _ in refused.rejected] == ["unstorable_text"]
