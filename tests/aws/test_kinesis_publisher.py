"""The collector's Kinesis publisher: every record stored before publish returns, partial
failures retried alone, 503 (PublishError) when the stream does not take them in time."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError

from clickstream_common.settings import KinesisSettings
from ingest_api.kinesis_publisher import (
    MAX_BYTES_PER_CALL,
    RECORD_RETRIES,
    KinesisPublisher,
    chunks,
    partition_key,
)
from ingest_api.publisher import PublishError
from tests.aws.conftest import kinesis_client, new_stream


def test_partition_key_is_the_user_key_or_a_hash() -> None:
    assert partition_key(b"user-1", b"{}") == "user-1"
    long_key = b"u" * 300
    assert partition_key(long_key, b"{}") == hashlib.sha256(long_key).hexdigest()
    assert partition_key(b"", b"value") == hashlib.sha256(b"value").hexdigest()
    assert partition_key(None, b"value") == hashlib.sha256(b"value").hexdigest()


def test_chunks_respect_the_call_limits_and_keep_the_order() -> None:
    entries = [{"Data": b"x", "PartitionKey": "k"} for _ in range(1201)]
    parts = chunks(entries)
    assert [len(p) for p in parts] == [500, 500, 201]
    big = [{"Data": b"x" * (1024 * 1024 - 10), "PartitionKey": f"k{i}"} for i in range(12)]
    parts = chunks(big)
    assert all(sum(len(e["Data"]) + 2 for e in p) <= MAX_BYTES_PER_CALL for p in parts)
    assert [e for p in parts for e in p] == big


class FlakyKinesis:
    """PutRecords that refuses some records per call (as throttled shards do)."""

    def __init__(self, refuse: list[set[int]] | None = None, error: str | None = None) -> None:
        self.refuse = refuse or []
        self.error = error
        self.calls: list[list[bytes]] = []
        self.stored: list[bytes] = []

    async def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append([r["Data"] for r in Records])
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "no"}}, "PutRecords")
        refused = self.refuse.pop(0) if self.refuse else set()
        results = []
        for i, record in enumerate(Records):
            if i in refused:
                results.append(
                    {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow"}
                )
            else:
                self.stored.append(record["Data"])
                results.append({"SequenceNumber": str(len(self.stored)), "ShardId": "s-0"})
        return {"FailedRecordCount": len(refused), "Records": results}

    async def describe_stream_summary(self, StreamName: str) -> dict[str, Any]:
        return {"StreamDescriptionSummary": {"StreamStatus": "ACTIVE"}}


def _publisher(fake: Any, timeout: float = 2.0) -> KinesisPublisher:
    return KinesisPublisher(KinesisSettings(), timeout, client=fake)


async def test_refused_records_are_sent_again_alone_until_all_are_stored() -> None:
    fake = FlakyKinesis(refuse=[{1, 3}, {0}])
    publisher = _publisher(fake)
    before = RECORD_RETRIES.labels("ProvisionedThroughputExceededException")._value.get()
    records = [(f"u{i}".encode(), f"v{i}".encode()) for i in range(5)]
    await publisher.publish(records, [])
    assert records == []  # handed over
    assert Counter(fake.stored) == Counter(f"v{i}".encode() for i in range(5))
    assert fake.calls[1] == [b"v1", b"v3"] and fake.calls[2] == [b"v1"]
    after = RECORD_RETRIES.labels("ProvisionedThroughputExceededException")._value.get()
    assert after - before == 3


async def test_a_stream_that_keeps_refusing_is_a_publish_error_in_time() -> None:
    fake = FlakyKinesis(refuse=[{0}] * 10_000)
    publisher = _publisher(fake, timeout=0.5)
    loop = asyncio.get_running_loop()
    begin = loop.time()
    with pytest.raises(PublishError):
        await publisher.publish([(b"u", b"v")], [])
    assert loop.time() - begin < 2.0
    assert fake.stored == []


async def test_a_missing_stream_fails_at_once() -> None:
    fake = FlakyKinesis(error="ResourceNotFoundException")
    with pytest.raises(PublishError, match="ResourceNotFoundException"):
        await _publisher(fake, timeout=5).publish([(b"u", b"v")], [])
    assert len(fake.calls) == 1


async def test_publish_to_kinesis_local_stores_each_event_under_its_user(kinesis_env: str) -> None:
    events = new_stream(kinesis_env, shards=2)
    dead = new_stream(kinesis_env, shards=1)
    settings = KinesisSettings(
        kinesis_stream_name=events,
        kinesis_dead_letter_stream_name=dead,
        kinesis_endpoint_url=kinesis_env,
        kinesis_region="us-east-1",
    )
    publisher = KinesisPublisher(settings, 5.0)
    await publisher.start()
    try:
        assert publisher.ready and await publisher.check()
        accepted = [(f"user-{i % 4}".encode(), f"event-{i}".encode()) for i in range(40)]
        rejected = [(b"user-9", b"bad-event")]
        await publisher.publish(list(accepted), list(rejected))
    finally:
        await publisher.stop()

    def stored(stream: str) -> list[tuple[str, bytes]]:
        kinesis = kinesis_client(kinesis_env)
        out = []
        for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
            iterator = kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            answer = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            out += [(r["PartitionKey"], r["Data"]) for r in answer["Records"]]
        return out

    in_events = stored(events)
    assert sorted(in_events) == sorted((k.decode(), v) for k, v in accepted)
    # Per user, in the order published (one shard per user key).
    for user in {k for k, _ in in_events}:
        got = [v for k, v in in_events if k == user]
        assert got == [v for k, v in accepted if k.decode() == user]
    assert stored(dead) == [("user-9", b"bad-event")]


async def test_an_unreachable_endpoint_is_not_ready_and_refuses() -> None:
    settings = KinesisSettings(
        kinesis_endpoint_url="http://127.0.0.1:9", kinesis_region="us-east-1"
    )
    publisher = KinesisPublisher(settings, 1.0)
    await publisher.start()
    try:
        assert not publisher.ready
        with pytest.raises(PublishError):
            await publisher.publish([(b"u", b"v")], [])
    finally:
        await publisher.stop()


def test_the_sink_setting_chooses_the_publisher(monkeypatch: pytest.MonkeyPatch) -> None:
    from ingest_api.config import Settings
    from ingest_api.publisher import KafkaPublisher, publisher_from_settings

    monkeypatch.setenv("KINESIS_STREAM_NAME", "my-events")
    kinesis = publisher_from_settings(Settings(ingest_sink="kinesis"))
    assert isinstance(kinesis, KinesisPublisher)
    assert kinesis.settings.kinesis_stream_name == "my-events"
    assert isinstance(publisher_from_settings(Settings()), KafkaPublisher)
