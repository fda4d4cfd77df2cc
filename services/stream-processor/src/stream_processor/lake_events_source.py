"""The lake's `events` data set as the stateful queries' source: each record read once.

The lake query is the only reader of the bus (Kafka or Kinesis). It parses and cleans every
record once and writes the valid events to the `events` data set, a batch's Parquet objects
then its commit marker. The windows and sessions queries read those committed batches back,
in batch order, through this Spark Python Data Source (format "clickstream-lake-events"):
the columns they aggregate, columnar, without a second read or parse of the records
(`bench/processor/stages.py` measures both paths).

* **Offsets** are lake batch ids: `{"batch": N}`, the newest `events` batch read (-1: none).
* **Planning** (`latestOffset`, on the driver) lists the stream commit markers of `events`
  after the start and reads, in order, as many as the trigger takes (small JSON objects:
  their objects and row counts). A trigger takes whole lake batches, up to
  `maxRowsPerTrigger` rows (at least one batch).
* **Reading** (`read`, on the executors): each partition gets a few of the markers' objects
  and yields their columns as Arrow record batches, read with one boto3 client per Python
  worker (`executor_writes.S3Target`).
* **Exactly once**: a committed lake batch never changes (a retried lake batch rewrites the
  same rows under the same names before its marker), so a stateful batch that runs again
  after a crash reads the same events. The compaction of the lake waits until the correction
  pass has examined a batch, which it does only once both stateful queries have read it.
* **What the commit markers carry**: a stateful batch read every lake batch up to N, so its
  input ended where lake batch N's did; `end_offsets` gives the bus offsets recorded in lake
  batch N's marker, which the windows and sessions markers carry for the correction pass
  (`correction.cover`), as they did when these queries read the bus themselves.

Late events are unchanged: the lake writes every valid event, the stateful queries drop the
ones behind their watermark, and the correction pass recomputes their windows and sessions.
The added latency is the lake batch's own: an event reaches the windows once its lake batch
has committed (`docs/benchmarks.md` has the freshness figures).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows
from pyspark.sql.types import StructType

from clickstream_common.arrow import arrow_schema
from clickstream_common.lake import (
    BatchKind,
    CommitMarker,
    SourceOffsets,
    commit_marker_key,
    list_commit_markers,
    parse_commit_marker_key,
    read_commit_marker,
)
from clickstream_common.tables import EVENTS
from stream_processor import transforms
from stream_processor.executor_writes import S3Target, spark_schema

FORMAT = "clickstream-lake-events"
# The events' columns the windows and sessions read (`transforms.aggregate_columns`).
COLUMNS = transforms.AGGREGATE_SOURCE_COLUMNS
SCHEMA = arrow_schema(EVENTS, COLUMNS)
NONE_READ = -1
# The option's name holds "secret": Spark redacts such options in plans and its UI.
TARGET_OPTION = "s3TargetSecret"


def target_option(target: S3Target) -> str:
    return json.dumps({"bucket": target.bucket, "client": dict(target.client_kwargs)})


def target_of(option: str) -> S3Target:
    parsed = json.loads(option)
    return S3Target(parsed["bucket"], tuple(sorted(parsed["client"].items())))


class ForeignCheckpointError(RuntimeError):
    """The query's checkpoint holds another source's offsets."""


def batch_of(offset: Mapping[str, Any]) -> int:
    if set(offset) != {"batch"}:
        # A checkpoint of the design before the one read, whose stateful queries read the
        # topic: Spark hands its Kafka offsets to this source.
        raise ForeignCheckpointError(
            f"the checkpoint holds another source's offsets ({json.dumps(offset)[:200]}): "
            "the windows and sessions queries read the lake's events since #17, not the "
            "topic; move their checkpoints away and start them again (docs/stream-processor.md"
            ", 'Upgrading a deployment to the one read')"
        )
    return int(offset["batch"])


def offset(batch: int) -> dict[str, int]:
    return {"batch": batch}


def take(markers: Iterable[CommitMarker], start: int, max_rows: int | None) -> int:
    """The newest lake batch a trigger reads after `start`: whole batches, in order, up to
    `max_rows` rows (at least one batch, so a large one cannot stall the queries); pure."""
    end, rows = start, 0
    for marker in markers:
        if marker.batch_id <= start:
            continue
        size = sum(o.rows for o in marker.objects)
        if max_rows is not None and end != start and rows + size > max_rows:
            break
        end, rows = marker.batch_id, rows + size
    return end


def split(keys: Sequence[str], parts: int) -> list[list[str]]:
    """Object keys in `parts` runs of consecutive keys at most (a task each); pure."""
    if not keys:
        return []
    parts = max(1, min(parts, len(keys)))
    size, extra = divmod(len(keys), parts)
    out, at = [], 0
    for i in range(parts):
        n = size + (1 if i < extra else 0)
        out.append(list(keys[at : at + n]))
        at += n
    return out


def as_events(table: pa.Table) -> pa.Table:
    """An events object's columns in SCHEMA: a column the object predates is NULL; pure."""
    columns = []
    for field in SCHEMA:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=SCHEMA)


class CompactedAwayError(RuntimeError):
    """A committed batch's object is gone: compaction rewrote it (it waits until both stateful
    queries have read a batch, so only a query without a checkpoint can meet this)."""


def read_objects(target: S3Target, keys: Sequence[str]) -> Iterator[pa.RecordBatch]:
    s3 = target.client()
    for key in keys:
        try:
            body = s3.get_object(Bucket=target.bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey as error:
            raise CompactedAwayError(
                f"{key} is gone (compacted): a stateful query without a checkpoint cannot "
                "read the lake from its first batch once compaction has run; start it at the "
                "newest batch (PROCESSOR_STARTING_OFFSETS=latest) and run the correction pass "
                "over the time before (docs/reliability.md)"
            ) from error
        parquet = pq.ParquetFile(io.BytesIO(body))
        present = [name for name in COLUMNS if name in parquet.schema_arrow.names]
        table = as_events(parquet.read(columns=present))
        for batch in table.to_batches():
            if batch.num_rows:
                yield batch


class ObjectsPartition(InputPartition):
    def __init__(self, keys: list[str]) -> None:
        self.keys = keys


class LakeEventsReader(DataSourceStreamReader):
    def __init__(self, options: Mapping[str, str]) -> None:
        self.target = target_of(options[TARGET_OPTION])
        self.starting = options.get("startingBatch", "earliest")
        rows = int(options.get("maxRowsPerTrigger", "0"))
        self.max_rows = rows if rows > 0 else None
        self.max_partitions = int(options.get("maxPartitions", "2"))
        # Markers read while planning, kept for `partitions` (the same reader on the driver).
        self.markers: dict[int, CommitMarker] = {}

    def _listed(self, after: int) -> list[tuple[int, str]]:
        """(batch id, key) of each stream marker of `events` after batch `after`, in order:
        one listing, from `after` on (the keys sort by batch id)."""
        start = commit_marker_key(EVENTS.name, after) if after > NONE_READ else ""
        found = []
        for listed in list_commit_markers(
            self.target.client(), self.target.bucket, EVENTS.name, BatchKind.STREAM, start
        ):
            parsed = parse_commit_marker_key(listed.key)
            if parsed is not None and parsed[1] > after:
                found.append((parsed[1], listed.key))
        return found

    def _marker(self, batch: int, key: str) -> CommitMarker:
        marker = self.markers.get(batch)
        if marker is None:
            marker = read_commit_marker(self.target.client(), self.target.bucket, key)
            self.markers[batch] = marker
        return marker

    def _markers(self, after: int, upto: int | None = None) -> Iterator[CommitMarker]:
        """The markers after `after` (up to `upto`), read lazily: planning a trigger reads
        only as many as its bound takes, however far behind the query is."""
        for batch, key in self._listed(after):
            if upto is not None and batch > upto:
                return
            yield self._marker(batch, key)

    def initialOffset(self) -> dict[str, int]:
        if self.starting == "latest":
            listed = self._listed(NONE_READ)
            return offset(listed[-1][0] if listed else NONE_READ)
        return offset(NONE_READ)

    def getDefaultReadLimit(self) -> ReadLimit:
        return ReadMaxRows(self.max_rows) if self.max_rows else ReadAllAvailable()

    def latestOffset(self, start: dict[str, Any], limit: ReadLimit) -> dict[str, int]:
        max_rows = limit.max_rows if isinstance(limit, ReadMaxRows) else None
        return offset(take(self._markers(batch_of(start)), batch_of(start), max_rows))

    def partitions(self, start: dict[str, Any], end: dict[str, Any]) -> list[InputPartition]:
        # From the markers planning read (or, when the offsets come from the checkpoint after
        # a restart, read again). Lake batches without valid events have no marker: the ids
        # between are sparse.
        first, last = batch_of(start), batch_of(end)
        keys = [o.key for m in self._markers(first, last) for o in m.objects if o.rows]
        return [ObjectsPartition(run) for run in split(keys, self.max_partitions)]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, ObjectsPartition)
        return read_objects(self.target, partition.keys)

    def commit(self, end: dict[str, Any]) -> None:
        done = batch_of(end)
        for batch in [b for b in self.markers if b <= done]:
            del self.markers[batch]


class LakeEventsSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return FORMAT

    def schema(self) -> StructType:
        return spark_schema(SCHEMA)

    def streamReader(self, schema: StructType) -> LakeEventsReader:
        return LakeEventsReader(self.options)


def lake_events_stream(
    spark: SparkSession,
    target: S3Target,
    starting: str,
    max_rows_per_trigger: int,
    max_partitions: int,
) -> DataFrame:
    """The committed valid events, in lake batch order, narrowed to what the aggregates read
    (`transforms.aggregate_columns`), as a streaming DataFrame."""
    spark.dataSource.register(LakeEventsSource)
    frame = (
        spark.readStream.format(FORMAT)
        .option(TARGET_OPTION, target_option(target))
        .option("startingBatch", starting)
        .option("maxRowsPerTrigger", str(max_rows_per_trigger))
        .option("maxPartitions", str(max_partitions))
        .load()
    )
    return transforms.aggregate_columns(frame)


def end_offsets(s3: Any, bucket: str, lake_batch: int) -> SourceOffsets | None:
    """The bus offsets where lake batch `lake_batch`'s input ended (its `events` marker)."""
    if lake_batch <= NONE_READ:
        return None
    return read_commit_marker(s3, bucket, commit_marker_key(EVENTS.name, lake_batch)).source_offsets
