"""The processor's Kinesis source against kinesis-local: offsets, one partition per shard,
resharding, limits, and the exactly-once replay of a batch through Spark's checkpoint."""

from __future__ import annotations

import json
import shutil
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows

from clickstream_common.settings import KinesisSettings
from clickstream_local.config import S3_ACCESS_KEY, S3_SECRET_KEY
from stream_processor.kinesis_source import (
    DataLossError,
    KinesisStreamReader,
    Options,
    ShardRange,
    kinesis_stream,
    read_range,
)
from tests.aws.conftest import kinesis_client, new_stream
from tests.conftest import wait_for


def _options(endpoint: str, stream: str, **extra: str) -> Options:
    return Options.parse({"streamName": stream, "endpointUrl": endpoint, **extra})


def _put(endpoint: str, stream: str, records: list[tuple[str, bytes]]) -> None:
    kinesis = kinesis_client(endpoint)
    for start in range(0, len(records), 500):
        chunk = records[start : start + 500]
        answer = kinesis.put_records(
            StreamName=stream, Records=[{"PartitionKey": k, "Data": v} for k, v in chunk]
        )
        assert answer["FailedRecordCount"] == 0


def _read_batch(reader: KinesisStreamReader, start: dict[str, Any], end: dict[str, Any]) -> list:
    rows = []
    for part in reader.partitions(start, end):
        rows += list(reader.read(part))
    return rows


def _records(n: int, users: int = 7, tag: str = "") -> list[tuple[str, bytes]]:
    return [(f"user-{i % users}", f"{tag}{i}".encode()) for i in range(n)]


def test_options_are_read_case_insensitively_and_checked() -> None:
    options = Options.parse({"streamname": "s", "STARTINGPOSITION": "Latest"})
    assert options.stream == "s" and options.starting_position == "latest"
    with pytest.raises(ValueError, match="streamName"):
        Options.parse({})
    with pytest.raises(ValueError, match="startingPosition"):
        Options.parse({"streamName": "s", "startingPosition": "middle"})


def test_batches_read_every_record_once_one_partition_per_shard(kinesis_env: str) -> None:
    stream = new_stream(kinesis_env, shards=3)
    reader = KinesisStreamReader(_options(kinesis_env, stream))
    start = reader.initialOffset()
    assert len(start["shards"]) == 3
    assert reader.latestOffset(start, ReadAllAvailable()) == start  # nothing yet

    first = _records(300, users=60, tag="a")
    _put(kinesis_env, stream, first)
    end = reader.latestOffset(start, ReadAllAvailable())
    parts = reader.partitions(start, end)
    assert sorted(p.shard_id for p in parts) == sorted(start["shards"])  # type: ignore[attr-defined]
    rows = _read_batch(reader, start, end)
    assert sorted(r[5] for r in rows) == sorted(v for _, v in first)

    # Per user, the order of the records is the order they were put in.
    by_user: defaultdict[str, list[bytes]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r[1], r[3])):
        by_user[row[4]].append(row[5])
    for user, values in by_user.items():
        assert values == [v for k, v in first if k == user]

    # The next batch starts where this one ended; ordinals continue per shard.
    second = _records(50, tag="b")
    _put(kinesis_env, stream, second)
    later = reader.latestOffset(end, ReadAllAvailable())
    rows2 = _read_batch(reader, end, later)
    assert sorted(r[5] for r in rows2) == sorted(v for _, v in second)
    ordinals: defaultdict[str, list[int]] = defaultdict(list)
    for row in rows + rows2:
        ordinals[row[1]].append(row[3])
    for shard, numbers in ordinals.items():
        assert sorted(numbers) == list(range(len(numbers))), shard
    # Offsets are plain JSON (what Spark writes to the checkpoint).
    assert json.loads(json.dumps(later)) == later


def test_read_limit_is_shared_by_the_shards(kinesis_env: str) -> None:
    stream = new_stream(kinesis_env, shards=2)
    reader = KinesisStreamReader(_options(kinesis_env, stream, maxRecordsPerTrigger="40"))
    assert reader.getDefaultReadLimit() == ReadMaxRows(40)
    start = reader.initialOffset()
    _put(kinesis_env, stream, _records(200))
    seen: list[bytes] = []
    offset = start
    for _ in range(20):
        end = reader.latestOffset(offset, ReadMaxRows(40))
        if end == offset:
            break
        batch = _read_batch(reader, offset, end)
        assert len(batch) <= 40
        seen += [r[5] for r in batch]
        offset = end
    assert sorted(seen) == sorted(v for _, v in _records(200))


def test_bytes_bound_is_shared_by_the_shards(kinesis_env: str) -> None:
    """PROCESSOR_MAX_BATCH_BYTES: a batch reads at most its share of bytes per shard (at least
    one record), also when the cut falls inside one GetRecords answer."""
    stream = new_stream(kinesis_env, shards=2)
    bound = 40 * 1024
    reader = KinesisStreamReader(
        _options(kinesis_env, stream, maxRecordsPerTrigger="1000", maxBytesPerTrigger=str(bound))
    )
    records = [(f"user-{i % 7}", f"{i:05d}".encode() * 1000) for i in range(60)]  # 5 KB each
    _put(kinesis_env, stream, records)
    seen: list[bytes] = []
    offset = reader.initialOffset()
    batches = 0
    for _ in range(60):
        end = reader.latestOffset(offset, ReadMaxRows(1000))
        if end == offset:
            break
        batch = _read_batch(reader, offset, end)
        # Each shard stops at its share (20 KB): 4 records of 5 KB.
        assert 0 < sum(len(r[5]) for r in batch) <= bound
        seen += [r[5] for r in batch]
        offset = end
        batches += 1
    assert sorted(seen) == sorted(v for _, v in records)
    assert batches >= 300_000 // bound  # the bound, not the record cap, cut the batches
    # A record larger than a shard's share still moves the batch on, alone.
    big = KinesisStreamReader(_options(kinesis_env, stream, maxBytesPerTrigger="100"))
    first = big.latestOffset(big.initialOffset(), ReadAllAvailable())
    assert sum(s["n"] for s in first["shards"].values()) == 2


def test_a_split_shard_is_read_to_its_end_before_its_children(kinesis_env: str) -> None:
    stream = new_stream(kinesis_env, shards=1)
    kinesis = kinesis_client(kinesis_env)
    reader = KinesisStreamReader(_options(kinesis_env, stream))
    offset = reader.initialOffset()
    before = _records(100, users=5, tag="before")
    _put(kinesis_env, stream, before)

    (parent,) = kinesis.list_shards(StreamName=stream)["Shards"]
    middle = int(parent["HashKeyRange"]["EndingHashKey"]) // 2
    kinesis.split_shard(
        StreamName=stream, ShardToSplit=parent["ShardId"], NewStartingHashKey=str(middle)
    )
    wait_for(
        lambda: len(kinesis.list_shards(StreamName=stream)["Shards"]) == 3,
        timeout=30,
        interval=0.2,
        what="the split",
    )
    after = _records(100, users=5, tag="after")
    _put(kinesis_env, stream, after)

    batches: list[list[Any]] = []
    for _ in range(10):
        end = reader.latestOffset(offset, ReadAllAvailable())
        if end == offset:
            break
        batches.append(_read_batch(reader, offset, end))
        offset = end
    everything = [r for batch in batches for r in batch]
    assert sorted(r[5] for r in everything) == sorted(v for _, v in before + after)
    # The parent's records come in an earlier batch than any child's.
    parent_batches = {i for i, b in enumerate(batches) for r in b if r[1] == parent["ShardId"]}
    child_batches = {i for i, b in enumerate(batches) for r in b if r[1] != parent["ShardId"]}
    assert max(parent_batches) < min(child_batches)
    assert offset["shards"][parent["ShardId"]]["done"] is True
    assert len(offset["shards"]) == 3
    # So each user's records stay in the order they were put in.
    order: defaultdict[str, list[bytes]] = defaultdict(list)
    for i, batch in enumerate(batches):
        for row in sorted(batch, key=lambda r: (r[1], r[3])):
            order[row[4]].append(row[5])
    for user, values in order.items():
        assert values == [v for k, v in before + after if k == user]


def test_a_range_the_shard_no_longer_has_is_data_loss(kinesis_env: str) -> None:
    stream = new_stream(kinesis_env, shards=1)
    _put(kinesis_env, stream, _records(5))
    options = _options(kinesis_env, stream)
    reader = KinesisStreamReader(options)
    start = reader.initialOffset()
    end = reader.latestOffset(start, ReadAllAvailable())
    (part,) = reader.partitions(start, end)
    assert isinstance(part, ShardRange)
    # Ten records where the checkpoint says five: the batch would not be what it was.
    wrong = ShardRange(part.shard_id, part.start, 0, part.end, 10)
    with pytest.raises(DataLossError):
        list(read_range(options, wrong))


def test_latest_starts_after_what_is_already_there(kinesis_env: str) -> None:
    stream = new_stream(kinesis_env, shards=2)
    _put(kinesis_env, stream, _records(20, tag="old"))
    reader = KinesisStreamReader(_options(kinesis_env, stream, startingPosition="latest"))
    start = reader.initialOffset()
    _put(kinesis_env, stream, _records(20, tag="new"))
    end = reader.latestOffset(start, ReadAllAvailable())
    rows = _read_batch(reader, start, end)
    assert sorted(r[5] for r in rows) == sorted(v for _, v in _records(20, tag="new"))


# --- through Spark: the Kafka source's columns and exactly-once replay -----------------------


@pytest.fixture(scope="module")
def spark_session() -> Any:
    # A session another test module made (the processor's) is shared, and left running.
    existing = SparkSession.getActiveSession()
    session = (
        SparkSession.builder.master("local[2]")
        .appName("kinesis-source-test")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    if existing is None:
        session.stop()


def _run_to_end(
    spark: SparkSession, frame: DataFrame, checkpoint: Path, sink: dict[int, list[Any]]
) -> None:
    def collect(batch: DataFrame, batch_id: int) -> None:
        sink[batch_id] = [tuple(r) for r in batch.collect()]

    query = (
        frame.writeStream.foreachBatch(collect)
        .option("checkpointLocation", str(checkpoint))
        .trigger(processingTime="1 second")
        .start()
    )
    try:
        query.processAllAvailable()
    finally:
        query.stop()


@pytest.mark.spark
def test_spark_reads_kinesis_in_kafka_columns_and_replays_a_batch_exactly(
    kinesis_env: str, spark_session: SparkSession, tmp_path: Path
) -> None:
    stream = new_stream(kinesis_env, shards=2)
    settings = KinesisSettings(
        kinesis_stream_name=stream, kinesis_endpoint_url=kinesis_env, kinesis_region="us-east-1"
    )
    keys = (S3_ACCESS_KEY, S3_SECRET_KEY)  # as options: the shared session's JVM has no keys
    frame = kinesis_stream(spark_session, settings, "earliest", 0, keys)
    assert frame.columns == [
        "key",
        "value",
        "topic",
        "partition",
        "offset",
        "timestamp",
        "timestampType",
    ]
    checkpoint = tmp_path / f"cp-{uuid.uuid4().hex[:6]}"
    first = _records(120, tag="x")
    _put(kinesis_env, stream, first)
    batches: dict[int, list[Any]] = {}
    _run_to_end(spark_session, frame, checkpoint, batches)
    rows = [r for b in batches.values() for r in b]
    assert sorted(bytes(r[1]) for r in rows) == sorted(v for _, v in first)
    assert {r[2] for r in rows} == {stream}
    assert {r[3] for r in rows} <= {0, 1}
    for key, value, *_ in rows:
        assert (bytes(key).decode(), bytes(value)) in first

    # A crash after the last batch ran but before Spark recorded it as done: the batch runs
    # again from the offsets in the checkpoint and must produce the very same rows.
    last = max(batches)
    commit = checkpoint / "commits" / str(last)
    assert commit.is_file()
    commit.unlink()
    (commit.parent / f".{last}.crc").unlink(missing_ok=True)
    shutil.rmtree(checkpoint / "state", ignore_errors=True)
    _put(kinesis_env, stream, _records(30, tag="y"))  # newer records must not leak in
    replayed: dict[int, list[Any]] = {}
    again = kinesis_stream(spark_session, settings, "earliest", 0, keys)
    _run_to_end(spark_session, again, checkpoint, replayed)
    assert sorted(replayed[last]) == sorted(batches[last])
    later = [r for b, rs in replayed.items() if b > last for r in rs]
    assert sorted(bytes(r[1]) for r in later) == sorted(v for _, v in _records(30, tag="y"))


def test_small_batches_carry_the_planned_records_and_equal_a_fresh_read(kinesis_env: str) -> None:
    stream = new_stream(kinesis_env, shards=2)
    options = _options(kinesis_env, stream)
    planner = KinesisStreamReader(options)
    start = planner.initialOffset()
    _put(kinesis_env, stream, _records(80, users=20))
    end = planner.latestOffset(start, ReadAllAvailable())
    carried = planner.partitions(start, end)
    assert carried and all(p.records is not None for p in carried)  # type: ignore[attr-defined]
    # A reader that did not plan the batch (a restarted driver) reads the shards instead.
    fresh = KinesisStreamReader(options).partitions(start, end)
    assert all(p.records is None for p in fresh)  # type: ignore[attr-defined]
    assert _read_batch(planner, start, end) == [
        r for p in fresh for r in KinesisStreamReader(options).read(p)
    ]


def test_planning_continues_with_the_last_iterator(
    kinesis_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stream_processor.kinesis_source as source

    calls: list[str] = []
    real_client = source.client

    class Counting:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(self.inner, name)

    monkeypatch.setattr(source, "client", lambda options: Counting(real_client(options)))
    stream = new_stream(kinesis_env, shards=2)
    reader = KinesisStreamReader(_options(kinesis_env, stream))
    offset = reader.initialOffset()
    seen: list[bytes] = []
    for round_ in range(3):
        _put(kinesis_env, stream, _records(30, users=10, tag=f"r{round_}-"))
        calls.clear()
        end = reader.latestOffset(offset, ReadAllAvailable())
        if round_ > 0:
            # Both shards continue from the iterators of the previous planning.
            assert "get_shard_iterator" not in calls
        seen += [r[5] for r in _read_batch(reader, offset, end)]
        offset = end
    assert sorted(seen) == sorted(v for i in range(3) for _, v in _records(30, 10, f"r{i}-"))


def test_only_a_python_worker_start_timeout_restarts_a_query_and_only_a_few_times() -> None:
    from stream_processor.job import MAX_RESTARTS, restartable

    class Failed:
        def __init__(self, error: str | None) -> None:
            self.error = error

        def exception(self) -> Exception | None:
            return RuntimeError(self.error) if self.error else None

    timeout = Failed("[STREAM_FAILED] ... Python worker failed to connect back.")
    assert restartable(timeout, 0)  # type: ignore[arg-type]
    assert not restartable(timeout, MAX_RESTARTS)  # type: ignore[arg-type]
    assert not restartable(Failed("DataLossError: records gone"), 0)  # type: ignore[arg-type]
    assert not restartable(Failed(None), 0)  # type: ignore[arg-type]
