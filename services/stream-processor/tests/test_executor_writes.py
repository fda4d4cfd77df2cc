"""The executors' write path (`executor_writes`, `BatchWriters`) against the driver-side
computation it replaces: the same rows in the lake, one object per (batch, partition, hour),
commit markers that list exactly those objects. An S3 endpoint of moto's (a unit test of the
write path; tests/processor runs the job on the real S3 server)."""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clickstream_common.lake import CommitMarker, commit_marker_key, stream_batch_of_object
from clickstream_common.settings import S3Settings
from clickstream_common.tables import (
    ACTIVE_USERS_5M,
    EVENTS,
    IDENTITIES,
    PRODUCT_STATS_MINUTE,
    SESSIONS,
)
from stream_processor import live_figures, transforms
from stream_processor.executor_writes import S3Target, latest_live_rows
from stream_processor.identities import identity_rows
from stream_processor.job import BatchWriters
from stream_processor.live_figures import LiveFigures
from stream_processor.sinks import LakeWriter, first_per_key, table_for

BUCKET = "lake"  # the s3_settings fixture's (conftest)


@pytest.fixture
def writers(s3_settings: S3Settings) -> BatchWriters:
    return BatchWriters(LakeWriter(s3_settings.s3_client(), BUCKET), S3Target.of(s3_settings))


def _marker(s3: Any, dataset: str, batch_id: int) -> CommitMarker:
    body = s3.get_object(Bucket=BUCKET, Key=commit_marker_key(dataset, batch_id))["Body"].read()
    return CommitMarker.model_validate_json(body)


def _committed(s3: Any, marker: CommitMarker) -> pa.Table:
    tables = [
        pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=o.key)["Body"].read()))
        for o in marker.objects
    ]
    for table, o in zip(tables, marker.objects, strict=True):
        assert table.num_rows == o.rows
    return pa.concat_tables(tables)


def _sorted(table: pa.Table, key: list[str]) -> list[dict[str, Any]]:
    return table.sort_by([(k, "ascending") for k in key]).to_pylist()


KafkaFrame = Callable[[list[bytes]], DataFrame]


def _records(kafka_frame: KafkaFrame, partitions: list[list[bytes]]) -> DataFrame:
    """Kafka rows in several Spark partitions, one per Kafka partition (as the source plans)."""
    frames = [
        kafka_frame(values).withColumn("partition", F.lit(p)) for p, values in enumerate(partitions)
    ]
    frame = frames[0]
    for other in frames[1:]:
        frame = frame.unionByName(other)
    return frame.repartitionByRange(len(partitions), "partition").sortWithinPartitions("offset")


def test_the_lake_batch_written_by_partitions_equals_the_whole_batch_written_once(
    kafka_frame: KafkaFrame,
    s3_settings: S3Settings,
    writers: BatchWriters,
    event: Callable[..., bytes],
) -> None:
    # Two Kafka partitions; the copies of an event share one (the collector's user key), a
    # second source reuses an event id, an anonymous id is linked to two users (earliest
    # wins: across partitions), records of two hours, and rejected records in both.
    def _event(event_id: str, at: str, event_type: str = "page_view", **fields: Any) -> bytes:
        return event(event_id, event_type, at, page_url="https://shop.example/p", **fields)

    p0 = [
        _event("e1", "2026-11-27T13:10:00Z", user_id="u1", anonymous_id="a1"),
        _event("e1", "2026-11-27T13:10:00Z", user_id="u1", anonymous_id="a1"),  # copy
        _event("e2", "2026-11-27T14:05:00Z", user_id="u1", anonymous_id="a1"),
        _event("e1", "2026-11-27T14:06:00Z", user_id="u3", source="app"),
        b"{not json",
    ]
    p1 = [
        _event("e3", "2026-11-27T13:09:00Z", user_id="u2", anonymous_id="a1"),  # earlier link
        _event("e4", "2026-11-27T14:01:00Z", anonymous_id="a9"),
        _event(
            "e5",
            "2026-11-27T14:02:00Z",
            user_id="u2",
            event_type="alias",
            properties={"previous_id": "a7"},
        ),
        _event("", "2026-11-27T14:02:00Z", user_id="u2"),
    ]
    records = _records(kafka_frame, [p0, p1])
    s3 = s3_settings.s3_client()
    batch_id = 11

    writers.lake(records, batch_id)

    # Independently: the whole batch collected and split as the driver used to.
    whole = transforms.lake_batch(records).toArrow()
    valid = first_per_key(whole.filter(pc.is_null(whole["error_reason"])), EVENTS.key)
    expected_events = table_for(EVENTS, valid, batch_id)
    events = _marker(s3, EVENTS.name, batch_id)
    assert {stream_batch_of_object(o.key) for o in events.objects} == {batch_id}
    assert all("-part-0000" in o.key for o in events.objects)
    assert len(events.objects) == 4  # two partitions, two hours each
    got = _committed(s3, events)
    assert got.schema == expected_events.schema
    key = ["source", "event_id"]
    assert _sorted(got, key) == _sorted(expected_events, key)
    assert got.num_rows == 6
    assert events.max_received_at == datetime(2026, 11, 27, 14, 6, tzinfo=UTC)

    identities = _marker(s3, IDENTITIES.name, batch_id)
    expected_links = table_for(IDENTITIES, identity_rows(valid), batch_id)
    links = _committed(s3, identities)
    assert _sorted(links, ["anonymous_id"]) == _sorted(expected_links, ["anonymous_id"])
    assert {r["anonymous_id"]: r["user_id"] for r in links.to_pylist()} == {"a1": "u2", "a7": "u2"}

    raw = [k["Key"] for k in s3.list_objects_v2(Bucket=BUCKET, Prefix="raw/")["Contents"]]
    lines = [
        line
        for k in raw
        for line in gzip.decompress(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()).split(b"\n")
        if line
    ]
    assert sorted(lines) == sorted(p0 + p1)
    assert sorted(k.rsplit("/", 1)[1] for k in raw) == ["part-00000.json.gz", "part-00001.json.gz"]
    errors = [k["Key"] for k in s3.list_objects_v2(Bucket=BUCKET, Prefix="errors/")["Contents"]]
    assert sorted(k.rsplit("/", 1)[1] for k in errors) == [
        f"batch-{batch_id:012d}-part-00000.jsonl.gz",
        f"batch-{batch_id:012d}-part-00001.jsonl.gz",
    ]

    # A retried batch overwrites its own objects: the same keys, the same rows.
    writers.lake(records, batch_id)
    again = _marker(s3, EVENTS.name, batch_id)
    assert [o.key for o in again.objects] == [o.key for o in events.objects]
    assert _sorted(_committed(s3, again), key) == _sorted(got, key)


def _minute_events(kafka_frame: KafkaFrame, event: Callable[..., bytes]) -> DataFrame:
    start = datetime(2026, 11, 27, 13, 0, tzinfo=UTC)
    values = []
    for i in range(60):
        at = (start + timedelta(seconds=37 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        kind = ("page_view", "product_view", "add_to_cart", "purchase")[i % 4]
        values.append(
            event(
                f"w{i}",
                kind,
                at,
                user_id=f"u{i % 7}",
                product_id=f"p{i % 5}",
                price="2.5",
                page_url=f"https://shop.example/{i % 3}",
            )
        )
    return _records(kafka_frame, [values[::2], values[1::2]])


def test_windows_and_sessions_written_by_partitions_equal_the_driver_split(
    kafka_frame: KafkaFrame,
    s3_settings: S3Settings,
    writers: BatchWriters,
    event: Callable[..., bytes],
    dataset_rows: Callable[..., DataFrame],
) -> None:
    s3 = s3_settings.s3_client()
    aggregates = transforms.window_aggregates(
        transforms.deduplicate(
            transforms.aggregate_input(_minute_events(kafka_frame, event)), "2 minutes"
        )
    ).repartition(3)
    writers.windows(aggregates, 4)
    for spec in transforms.WINDOW_DATASETS:
        marker = _marker(s3, spec.name, 4)
        expected = dataset_rows(aggregates, spec, 4).toArrow()
        key = [c for c in spec.key]
        assert _sorted(_committed(s3, marker), key) == _sorted(expected, key), spec.name
        assert marker.max_received_at == datetime(2026, 11, 27, 13, 36, 23, tzinfo=UTC)

    closed = transforms.sessions(
        transforms.aggregate_input(_minute_events(kafka_frame, event)), "30 minutes"
    ).repartition(2)
    writers.sessions(closed, 5)
    marker = _marker(s3, SESSIONS.name, 5)
    expected = table_for(SESSIONS, closed.toArrow(), 5)
    assert _sorted(_committed(s3, marker), ["session_key"]) == _sorted(expected, ["session_key"])

    # Nothing to write: still the markers the correction pass reads.
    empty = aggregates.limit(0)
    writers.windows(empty, 6)
    assert _marker(s3, ACTIVE_USERS_5M.name, 6).objects == []
    writers.sessions(closed.limit(0), 7)
    assert _marker(s3, SESSIONS.name, 7).objects == []


def test_the_live_figures_from_partitions_equal_those_from_every_row() -> None:
    """`latest_live_rows` keeps, per partition, only rows the live figures can still use:
    fed with them, the gauges read what they read when fed every row of the batch."""
    t0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    active = [
        {"dataset": ACTIVE_USERS_5M.name, "window_start": t0 + timedelta(minutes=m),
         "window_end": t0 + timedelta(minutes=m + 5), "active_users": 100 + m,
         "product_id": None, "views": None}
        for m in range(0, 40)
    ]  # fmt: skip
    products = [
        {"dataset": PRODUCT_STATS_MINUTE.name, "window_start": t0 + timedelta(minutes=m),
         "window_end": t0 + timedelta(minutes=m + 1), "active_users": None,
         "product_id": f"p{(m * 7 + j) % 13}", "views": m + j}
        for m in range(0, 40) for j in range(3)
    ]  # fmt: skip
    parts = [
        pa.Table.from_pylist(active[::2] + products[::2]),
        pa.Table.from_pylist(active[1::2] + products[1::2]),
    ]

    def gauges(figures: LiveFigures) -> tuple[float, dict[str, float]]:
        users = live_figures.ACTIVE_USERS._value.get()
        trending = {
            s.labels["product_id"]: s.value
            for m in live_figures.TRENDING_PRODUCT_VIEWS.collect()
            for s in m.samples
        }
        return users, trending

    full = LiveFigures()
    full.observe(active, products)
    expected = gauges(full)
    kept = pa.Table.from_batches([b for part in parts for b in latest_live_rows(part)])
    assert kept.num_rows < (len(active) + len(products)) // 2
    rows = kept.to_pylist()
    reduced = LiveFigures()
    reduced.observe(
        [r for r in rows if r["kind"] == "live_active"],
        [r for r in rows if r["kind"] == "live_product"],
    )
    assert gauges(reduced) == expected
    assert expected[0] == 100 + 35


def test_the_target_pickles_without_showing_its_secret(s3_settings: S3Settings) -> None:
    import pickle

    target = S3Target.of(s3_settings)
    assert pickle.loads(pickle.dumps(target)) == target
    assert "test" not in repr(target).replace("S3Target", "")
    assert target.client() is target.client()
    target.client().head_bucket(Bucket=BUCKET)  # the endpoint and keys it was built from
