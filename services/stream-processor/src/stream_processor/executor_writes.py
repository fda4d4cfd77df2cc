"""What the executors do with a micro-batch: write its lake objects, and tell the driver what
they wrote.

Each query's foreachBatch hands its batch to `DataFrame.mapInArrow` with one of the partition
writers below. A Spark partition's rows arrive in an executor's Python worker as Arrow; the
writer serialises them with the same functions that write a whole batch
(`clickstream_common.lake_writer.write_dataset_objects`, `sinks.write_raw_objects`,
`sinks.write_error_objects`), puts the objects with a boto3 client of its own (built once per
Python worker from `S3Target`), and yields one small row per object (key, rows, newest
`received_at`) plus the few figures the driver needs: error counts per reason, the live
figures' latest windows, the identity links to reduce. Only those rows reach the driver,
which then writes each data set's commit marker, last and in its usual form
(`clickstream_common.lake.CommitMarker`), so the loader and its ledger see what they always
saw.

Object names are `<batch>-part-<P>` per (batch, Spark partition P, hour). A batch that runs
again after a crash reads the same offsets (Spark's offset log), so it plans the same
partitions and overwrites its own objects; the marker lists the objects of the attempt that
succeeded.

Exactness across partitions:

* Events are deduplicated on `EVENTS.key` within a partition. The collector keys each Kafka
  record (and each Kinesis record's partition key) by the event's user key
  (`ingest_api.intake`, `ingest_api.kinesis_publisher.partition_key`), a function of the
  event's own identity fields, so every copy of an event lands in one Kafka partition or
  Kinesis shard, which is one Spark partition of the lake query. Copies sent by another
  producer under different keys may land in two partitions of one batch; the warehouse still
  keeps one row per key (`events` merges INSERT_NEW) and the aggregates deduplicate in their
  own state, so no figure changes: only which copy the events table keeps.
* Identity links are reduced per partition to the earliest per anonymous id
  (`identities.earliest_links`), shuffled by anonymous id and reduced again where they are
  written: the same rows as one reduction over the batch (a total order, so any split agrees).
* Windows and sessions are already one row per key after their aggregation's shuffle.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark import TaskContext
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema

from clickstream_common.lake import CommittedObject
from clickstream_common.lake_writer import write_dataset_objects
from clickstream_common.settings import S3Settings
from clickstream_common.tables import (
    ACTIVE_USERS_5M,
    EVENTS,
    IDENTITIES,
    PRODUCT_STATS_MINUTE,
    TableSpec,
)
from stream_processor import transforms
from stream_processor.identities import LINK_SCHEMA, earliest_links, identity_links
from stream_processor.live_figures import TRENDING_SPAN
from stream_processor.sinks import (
    first_per_key,
    max_timestamp,
    table_for,
    write_error_objects,
    write_raw_objects,
)

PartitionWriter = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]


@dataclass(frozen=True)
class S3Target:
    """Where the executors write: picklable (it travels with the partition writer to each
    executor), and the key of the one client each Python worker builds for it."""

    bucket: str
    client_kwargs: tuple[tuple[str, str | None], ...] = field(repr=False)

    @classmethod
    def of(cls, settings: S3Settings) -> S3Target:
        return cls(settings.s3_bucket, tuple(sorted(settings.boto3_client_kwargs().items())))

    def client(self) -> Any:
        return _client(self.client_kwargs)


@functools.cache
def _client(kwargs: tuple[tuple[str, str | None], ...]) -> Any:
    """One boto3 client per Python worker and target (Spark reuses its workers across tasks
    and batches; a client's connection pool outlives the task)."""
    import boto3

    return boto3.client("s3", **dict(kwargs))


# --- what a partition tells the driver ----------------------------------------------------

OBJECT = "object"  # an object written: dataset (or zone), key, rows, newest received_at
ERROR_REASON = "error_reason"  # rejected records of one reason: reason, rows
LINK = "link"  # an identity link still to reduce across partitions (never collected)
LINKS = "links"  # how many links a partition yielded: rows
LIVE_ACTIVE = "live_active"  # an active-users window for the live figures
LIVE_PRODUCT = "live_product"  # a product's views in one minute, for the live figures

RAW_ZONE = "raw"
ERRORS_ZONE = "errors"

_TIME = pa.timestamp("us", tz="UTC")
OBJECTS_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("dataset", pa.string()),
        ("key", pa.string()),
        ("rows", pa.int64()),
        ("max_received_at", _TIME),
    ]
)
LAKE_SCHEMA = pa.schema([*OBJECTS_SCHEMA, ("reason", pa.string()), *LINK_SCHEMA])
WINDOWS_SCHEMA = pa.schema(
    [
        *OBJECTS_SCHEMA,
        ("window_start", _TIME),
        ("window_end", _TIME),
        ("active_users", pa.int64()),
        ("product_id", pa.string()),
        ("views", pa.int64()),
    ]
)


LINK_COLUMNS: tuple[str, ...] = tuple(LINK_SCHEMA.names)


def spark_schema(schema: pa.Schema) -> T.StructType:
    return from_arrow_schema(schema)


def _batch(schema: pa.Schema, rows: int, columns: dict[str, Any]) -> pa.RecordBatch:
    """`rows` rows of `schema`: the given columns (lists or Arrow arrays), NULL elsewhere."""
    arrays = []
    for f in schema:
        value = columns.get(f.name)
        if value is None:
            arrays.append(pa.nulls(rows, f.type))
        elif isinstance(value, pa.ChunkedArray | pa.Array):
            chunk = value.combine_chunks() if isinstance(value, pa.ChunkedArray) else value
            arrays.append(chunk.cast(f.type))
        else:
            arrays.append(pa.array(value, f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _kind_rows(schema: pa.Schema, kind: str, **columns: Any) -> pa.RecordBatch:
    """Rows of one kind: the given columns (all of one length), NULL elsewhere."""
    rows = len(next(iter(columns.values())))
    return _batch(schema, rows, {"kind": [kind] * rows, **columns})


def _objects(
    schema: pa.Schema, dataset: str, objects: list[CommittedObject], newest: datetime | None
) -> pa.RecordBatch:
    return _kind_rows(
        schema,
        OBJECT,
        dataset=[dataset] * len(objects),
        key=[o.key for o in objects],
        rows=[o.rows for o in objects],
        max_received_at=[newest] * len(objects),
    )


def _partition(batches: Iterator[pa.RecordBatch]) -> tuple[int, pa.Table] | None:
    """This task's Spark partition number and its rows (None when it has none)."""
    collected = list(batches)
    if not collected or not any(b.num_rows for b in collected):
        return None
    context = TaskContext.get()
    part = context.partitionId() if context is not None else 0
    return part, pa.Table.from_batches(collected)


# --- the partition writers (they run on the executors) ------------------------------------

PartitionBody = Callable[[int, pa.Table, Any, str], Iterator[pa.RecordBatch]]


def _per_partition(target: S3Target, body: PartitionBody) -> PartitionWriter:
    """A `mapInArrow` function: `body(part, rows, s3 client, bucket)` over the task's
    partition, skipped when it has no rows."""

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        got = _partition(batches)
        if got is not None:
            part, table = got
            yield from body(part, table, target.client(), target.bucket)

    return write


def lake_partition_writer(target: S3Target, batch_id: int) -> PartitionWriter:
    """Over `transforms.lake_batch`: the raw zone, errors/ and the events data set of one
    partition, in `LAKE_SCHEMA` rows (objects, error counts, identity links)."""

    def write(part: int, table: pa.Table, s3: Any, bucket: str) -> Iterator[pa.RecordBatch]:
        raw = write_raw_objects(
            s3, bucket, table.select(["kafka_timestamp", "value"]), batch_id, part
        )
        yield _objects(LAKE_SCHEMA, RAW_ZONE, raw, None)
        rejected = pc.is_valid(table["error_reason"])
        errors = table.filter(rejected)
        if errors.num_rows:
            errors = errors.rename_columns(
                ["reason" if n == "error_reason" else n for n in errors.column_names]
            ).select(list(transforms.ERROR_COLUMNS))
            written = write_error_objects(s3, bucket, errors, batch_id, part)
            yield _objects(LAKE_SCHEMA, ERRORS_ZONE, written, None)
            counts = errors.group_by("reason").aggregate([("reason", "count")])
            yield _kind_rows(
                LAKE_SCHEMA, ERROR_REASON, reason=counts["reason"], rows=counts["reason_count"]
            )
        # One row per (source, event_id): exact across partitions (module docstring).
        valid = first_per_key(table.filter(pc.invert(rejected)), EVENTS.key)
        if valid.num_rows == 0:
            return
        rows = table_for(EVENTS, valid, batch_id)
        newest = max_timestamp(rows, "received_at")
        written = write_dataset_objects(
            s3, bucket, EVENTS.name, rows, batch_id, EVENTS.time_column, part
        )
        yield _objects(LAKE_SCHEMA, EVENTS.name, written, newest)
        links = earliest_links(identity_links(valid))
        yield _kind_rows(LAKE_SCHEMA, LINKS, rows=[links.num_rows])
        if links.num_rows:
            yield _kind_rows(LAKE_SCHEMA, LINK, **{n: links[n] for n in links.column_names})

    return _per_partition(target, write)


def identities_partition_writer(target: S3Target, batch_id: int) -> PartitionWriter:
    """Over identity links shuffled by anonymous id: the `identities` objects."""

    def write(part: int, links: pa.Table, s3: Any, bucket: str) -> Iterator[pa.RecordBatch]:
        rows = table_for(IDENTITIES, earliest_links(links.select(list(LINK_COLUMNS))), batch_id)
        written = write_dataset_objects(
            s3,
            bucket,
            IDENTITIES.name,
            rows,
            batch_id,
            IDENTITIES.time_column,
            part,
        )
        yield _objects(OBJECTS_SCHEMA, IDENTITIES.name, written, None)

    return _per_partition(target, write)


def latest_live_rows(table: pa.Table) -> Iterable[pa.RecordBatch]:
    """The window rows the live figures can still use, from one partition: the active-users
    windows that may end with the newest minute, and the product minutes within the trending
    span of the newest one. A row older than that in this partition is older than that in the
    batch as well, so `LiveFigures` would drop it anyway."""
    active = table.filter(pc.equal(table["dataset"], ACTIVE_USERS_5M.name))
    if active.num_rows:
        newest = pc.max(active["window_start"]).as_py()
        recent = active.filter(
            pc.greater(active["window_end"], pa.scalar(newest, active["window_start"].type))
        )
        yield _kind_rows(
            WINDOWS_SCHEMA,
            LIVE_ACTIVE,
            **{c: recent[c] for c in ("window_start", "window_end", "active_users")},
        )
    products = table.filter(pc.equal(table["dataset"], PRODUCT_STATS_MINUTE.name))
    if products.num_rows:
        newest = pc.max(products["window_start"]).as_py()
        horizon = newest + timedelta(minutes=1) - TRENDING_SPAN
        recent = products.filter(
            pc.greater_equal(
                products["window_start"], pa.scalar(horizon, products["window_start"].type)
            )
        )
        yield _kind_rows(
            WINDOWS_SCHEMA,
            LIVE_PRODUCT,
            **{c: recent[c] for c in ("window_start", "product_id", "views")},
        )


def windows_partition_writer(target: S3Target, batch_id: int) -> PartitionWriter:
    """Over `transforms.window_rows`: the four windowed data sets of one partition, in
    `WINDOWS_SCHEMA` rows (objects, live figures' rows)."""

    def write(part: int, table: pa.Table, s3: Any, bucket: str) -> Iterator[pa.RecordBatch]:
        for spec in transforms.WINDOW_DATASETS:
            mine = table.filter(pc.equal(table["dataset"], spec.name))
            if mine.num_rows == 0:
                continue
            rows = table_for(spec, mine, batch_id)
            written = write_dataset_objects(
                s3, bucket, spec.name, rows, batch_id, spec.time_column, part
            )
            yield _objects(
                WINDOWS_SCHEMA, spec.name, written, max_timestamp(mine, "max_received_at")
            )
        yield from latest_live_rows(table)

    return _per_partition(target, write)


def dataset_partition_writer(target: S3Target, batch_id: int, spec: TableSpec) -> PartitionWriter:
    """Over rows of one data set (with `max_received_at`): its objects (sessions)."""

    def write(part: int, table: pa.Table, s3: Any, bucket: str) -> Iterator[pa.RecordBatch]:
        rows = table_for(spec, table, batch_id)
        written = write_dataset_objects(
            s3, bucket, spec.name, rows, batch_id, spec.time_column, part
        )
        yield _objects(OBJECTS_SCHEMA, spec.name, written, max_timestamp(table, "max_received_at"))

    return _per_partition(target, write)


# --- what the driver makes of the rows (pure) ---------------------------------------------


@dataclass(frozen=True)
class Written:
    """A batch's objects by data set (or zone), as its commit markers list them."""

    objects: dict[str, list[CommittedObject]]
    newest: dict[str, datetime | None]

    @classmethod
    def of(cls, summary: pa.Table) -> Written:
        objects: defaultdict[str, list[CommittedObject]] = defaultdict(list)
        newest: dict[str, datetime | None] = {}
        rows = summary.filter(pc.equal(summary["kind"], OBJECT)).to_pylist()
        for row in sorted(rows, key=lambda r: r["key"]):
            dataset = row["dataset"]
            objects[dataset].append(CommittedObject(key=row["key"], rows=row["rows"]))
            at = row["max_received_at"]
            if at is not None and (newest.get(dataset) is None or at > newest[dataset]):
                newest[dataset] = at
            newest.setdefault(dataset, None)
        return cls(dict(objects), newest)

    def newest_of(self, datasets: Iterable[str]) -> datetime | None:
        times = [t for d in datasets if (t := self.newest.get(d)) is not None]
        return max(times) if times else None


def error_counts(summary: pa.Table) -> dict[str, int]:
    counts: defaultdict[str, int] = defaultdict(int)
    for row in summary.filter(pc.equal(summary["kind"], ERROR_REASON)).to_pylist():
        counts[row["reason"]] += int(row["rows"])
    return dict(counts)


def link_count(summary: pa.Table) -> int:
    return int(pc.sum(summary.filter(pc.equal(summary["kind"], LINKS))["rows"]).as_py() or 0)


def live_rows(summary: pa.Table, kind: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = summary.filter(pc.equal(summary["kind"], kind)).to_pylist()
    return rows
