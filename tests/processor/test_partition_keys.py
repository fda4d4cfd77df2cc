"""What the executors' per-partition dedup relies on (`stream_processor.executor_writes`):
the collector gives every copy of an event the same Kafka record key and the same Kinesis
partition key, so the copies share one Kafka partition or shard, i.e. one Spark partition of
the lake query. A retried request is received again later (another receive time, another
request id): the key must not depend on any of that."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from clickstream_common.schema import DEFAULT_CLOCK_POLICY, EnrichedEvent, user_key_of
from ingest_api.enrichment import RequestFacts
from ingest_api.intake import Batch, Candidate, Limits, process
from ingest_api.kinesis_publisher import partition_key

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LIMITS = Limits(
    max_events=10, max_request_bytes=2**20, max_event_bytes=2**15, max_properties_bytes=2**14
)
FIRST = RequestFacts(
    "web", T0, "192.0.2.1", None, timedelta(seconds=2), timedelta(days=7), DEFAULT_CLOCK_POLICY
)
RETRY = replace(FIRST, received_at=T0 + timedelta(seconds=40), client_ip="192.0.2.9")


def accepted(events: list[dict[str, Any]], facts: RequestFacts, request: str) -> list[Any]:
    batch = Batch(b"\x02" * 32, check_text=False)
    candidates = [Candidate(e, e, None) for e in events]
    return process(candidates, facts, LIMITS, request, "events", batch).accepted


def test_every_copy_of_an_event_gets_one_record_key_and_one_partition_key() -> None:
    events = [
        {"event_id": "e1", "event_type": "click", "timestamp": "2026-11-27T11:59:00Z",
         "user_id": "u1", "anonymous_id": "a1"},
        {"event_id": "e2", "event_type": "click", "timestamp": "2026-11-27T11:59:00Z",
         "anonymous_id": "a2"},
        # No event id: the collector derives one from the request body, the same again.
        {"event_type": "page_view", "timestamp": "2026-11-27T11:59:30Z", "user_id": "u3"},
    ]  # fmt: skip
    first = accepted(events, FIRST, "request-1")
    again = accepted(events, RETRY, "request-2")
    assert len(first) == len(again) == len(events)
    for (key, value), (key_again, value_again) in zip(first, again, strict=True):
        a, b = orjson.loads(value), orjson.loads(value_again)
        assert (a["source"], a["event_id"]) == (b["source"], b["event_id"])  # one event
        assert a["received_at"] != b["received_at"]  # received twice
        assert key == key_again
        assert partition_key(key, value) == partition_key(key_again, value_again)
        # The key is the user key the processor derives from the same record.
        record = EnrichedEvent.model_validate(a)
        assert key.decode() == user_key_of(record.user_id, record.anonymous_id)
