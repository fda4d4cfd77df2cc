"""The stateful queries' source (`lake_events_source`): the lake's committed `events` batches
read back in order, as the columns the aggregates read. Against what the same records give
when each query read and cleaned them from the bus itself (`transforms.aggregate_input`)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession

from clickstream_common.lake import CommitMarker, CommittedObject, commit_marker_key
from clickstream_common.settings import S3Settings
from clickstream_common.tables import EVENTS
from stream_processor import transforms
from stream_processor.executor_writes import S3Target
from stream_processor.job import BatchWriters
from stream_processor.lake_events_source import (
    COLUMNS,
    SCHEMA,
    ForeignCheckpointError,
    as_events,
    batch_of,
    end_offsets,
    lake_events_stream,
    split,
    take,
    target_of,
    target_option,
)
from stream_processor.progress import BatchProgress, parse_offset_log
from stream_processor.sinks import LakeWriter

BUCKET = "lake-events-source"  # the s3_settings fixture's (conftest)
KafkaFrame = Callable[[list[bytes]], DataFrame]
OFFSETS = {3: {"clickstream.events": {"0": 4}}, 5: {"clickstream.events": {"0": 9}}}


def _marker(batch: int, *rows: int) -> CommitMarker:
    return CommitMarker(
        dataset=EVENTS.name,
        batch_id=batch,
        objects=[CommittedObject(key=f"k{batch}-{i}", rows=n) for i, n in enumerate(rows)],
        committed_at=datetime(2026, 11, 28, tzinfo=UTC),
    )


def test_a_trigger_takes_whole_lake_batches_up_to_the_row_bound() -> None:
    markers = [_marker(1, 40, 10), _marker(2, 30), _marker(4, 60), _marker(7, 5)]
    assert take(markers, -1, None) == 7
    assert take(markers, -1, 80) == 2  # 50 + 30; batch 4 would pass the bound
    assert take(markers, 2, 80) == 7  # 60 + 5
    assert take(markers, -1, 10) == 1  # one batch even above the bound: never stalls
    assert take(markers, 7, 80) == 7  # nothing new: the same offset
    assert take([], 3, 80) == 3


def test_objects_are_split_into_runs_of_consecutive_keys() -> None:
    assert split([], 4) == []
    assert split(["a", "b", "c"], 2) == [["a", "b"], ["c"]]
    assert split(["a", "b"], 8) == [["a"], ["b"]]
    runs = split([str(i) for i in range(11)], 3)
    assert [key for run in runs for key in run] == [str(i) for i in range(11)]
    assert [len(run) for run in runs] == [4, 4, 3]


def test_an_object_older_than_a_column_reads_it_as_null() -> None:
    present = [c for c in COLUMNS if c != "user_agent_info_is_bot"]
    table = pa.table({c: pa.nulls(2, SCHEMA.field(c).type) for c in present})
    got = as_events(table)
    assert got.schema == SCHEMA
    assert got.column("user_agent_info_is_bot").null_count == 2


def test_the_target_travels_as_one_option_and_comes_back_equal(s3_settings: S3Settings) -> None:
    target = S3Target.of(s3_settings)
    assert target_of(target_option(target)) == target


def test_a_checkpoint_of_the_topic_reading_design_is_refused_saying_what_to_do() -> None:
    assert batch_of({"batch": 7}) == 7
    with pytest.raises(ForeignCheckpointError, match="move their checkpoints away"):
        batch_of({"clickstream.events": {"0": 1234}})


def test_the_offset_log_of_a_lake_reading_query_names_its_lake_batch() -> None:
    text = 'v1\n{"batchWatermarkMs":1764324000000}\n{"batch": 41}'
    progress = parse_offset_log(text)
    assert progress.lake_batch == 41 and progress.source_offsets is None
    assert progress.watermark == datetime.fromtimestamp(1764324000, UTC)
    kafka = parse_offset_log('v1\n{"batchWatermarkMs":0}\n{"clickstream.events":{"0":7}}')
    assert kafka.lake_batch is None and kafka.source_offsets == {"clickstream.events": {"0": 7}}


def _records(kafka_frame: KafkaFrame, event: Callable[..., bytes], prefix: str) -> DataFrame:
    values = [
        event(
            f"{prefix}-{i}",
            ("page_view", "purchase")[i % 2],
            f"2026-11-27T13:{i:02d}:00Z",
            user_id=f"u{i % 3}",
            product_id="p1",
            price="2.5",
            page_url="https://shop.example/x",
            user_agent="Mozilla/5.0",
        )
        for i in range(6)
    ]
    values.append(values[0])  # a copy in the same batch: the lake keeps one
    values.append(b"{not json")  # rejected: never an event
    # One Kafka partition is one Spark partition (the collector keys a user's records alike).
    return kafka_frame(values).coalesce(1)


def _rows(frame: DataFrame) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in frame.select(*sorted(frame.columns)).collect())


def _expected(records: DataFrame) -> list[tuple[Any, ...]]:
    """What a query that read the records from the bus itself aggregated (copies dropped)."""
    return _rows(transforms.aggregate_input(records).dropDuplicates(list(EVENTS.key)))


def _read(stream: DataFrame, checkpoint: Path) -> list[list[tuple[Any, ...]]]:
    """The rows of each non-empty micro-batch of a query over `stream`, run until it has
    read all there is (a processing-time trigger: under availableNow Spark reads all there
    is in one micro-batch, whatever the row bound)."""
    seen: list[list[tuple[Any, ...]]] = []
    query = (
        stream.writeStream.foreachBatch(lambda frame, _: seen.append(_rows(frame)))
        .option("checkpointLocation", str(checkpoint))
        .start()
    )
    try:
        query.processAllAvailable()
    finally:
        query.stop()
    assert query.exception() is None
    return [rows for rows in seen if rows]


@pytest.fixture
def lake(s3_settings: S3Settings, kafka_frame: KafkaFrame, event: Callable[..., bytes]) -> Lake:
    """A lake of its own (a new bucket) per test."""
    s3 = s3_settings.s3_client()
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    target = dataclasses.replace(S3Target.of(s3_settings), bucket=bucket)
    offsets = iter(OFFSETS.values())
    writers = BatchWriters(
        LakeWriter(s3, bucket),
        target,
        lambda query, batch: BatchProgress(None, next(offsets, None)),
    )
    return Lake(s3, bucket, target, writers, kafka_frame, event)


@dataclass
class Lake:
    s3: Any
    bucket: str
    target: S3Target
    writers: BatchWriters
    kafka_frame: KafkaFrame
    event: Callable[..., bytes]

    def write(self, batch: int, prefix: str | None) -> DataFrame:
        """Lake batch `batch` of six events (a copy, a rejected record), or only a rejected
        record (no valid event: no events marker) without a prefix."""
        records = (
            _records(self.kafka_frame, self.event, prefix)
            if prefix
            else self.kafka_frame([b"{not json"])
        )
        self.writers.lake(records, batch)
        return records


def test_the_stream_reads_each_committed_batch_once_in_order_as_the_bus_read_gave(
    spark: SparkSession, lake: Lake, tmp_path: Path
) -> None:
    first = lake.write(3, "a")
    lake.write(4, None)
    second = lake.write(5, "b")

    # One lake batch's rows per trigger at most (6 each): two micro-batches.
    stream = lake_events_stream(spark, lake.target, "earliest", 6, 2)
    assert _read(stream, tmp_path / "cp") == [_expected(first), _expected(second)]
    # Each micro-batch's offset names the last lake batch it read; its marker, the bus
    # offsets the windows and sessions markers then carry.
    logs = sorted((tmp_path / "cp" / "offsets").glob("[0-9]*"), key=lambda p: int(p.name))
    assert [parse_offset_log(p.read_text()).lake_batch for p in logs] == [3, 5]
    assert end_offsets(lake.s3, lake.bucket, 5) == OFFSETS[5]
    assert end_offsets(lake.s3, lake.bucket, -1) is None


def test_a_new_query_starting_at_latest_reads_only_later_batches(
    spark: SparkSession, lake: Lake, tmp_path: Path
) -> None:
    lake.write(20, "old")
    stream = lake_events_stream(spark, lake.target, "latest", 0, 2)
    assert _read(stream, tmp_path / "cp") == []
    new = lake.write(21, "new")
    # From its checkpoint: the batch written since, only.
    assert _read(stream, tmp_path / "cp") == [_expected(new)]


def test_a_new_query_over_a_compacted_batch_fails_saying_what_to_do(
    spark: SparkSession, lake: Lake, tmp_path: Path
) -> None:
    lake.write(30, "gone")
    key = commit_marker_key(EVENTS.name, 30)
    marker = CommitMarker.model_validate_json(
        lake.s3.get_object(Bucket=lake.bucket, Key=key)["Body"].read()
    )
    lake.s3.delete_object(Bucket=lake.bucket, Key=marker.objects[0].key)
    query = (
        lake_events_stream(spark, lake.target, "earliest", 0, 2)
        .writeStream.foreachBatch(lambda frame, _: frame.count())
        .option("checkpointLocation", str(tmp_path / "cp"))
        .start()
    )
    try:
        with pytest.raises(StreamingQueryException, match="PROCESSOR_STARTING_OFFSETS=latest"):
            query.processAllAvailable()
    finally:
        query.stop()
