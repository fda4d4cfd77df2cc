"""Per-micro-batch writers for the lake. Every object name derives from the batch id, so a
batch that Spark retries after a crash overwrites its own output instead of adding to it, and
each data set's commit marker is written after all of its objects."""

from __future__ import annotations

import base64
import gzip
import io
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from clickstream_common.lake import (
    RAW_PREFIX,
    CommittedObject,
    error_object_key,
)
from clickstream_common.lake_writer import DatasetWriter, partitions_of
from clickstream_common.tables import TableSpec

log = logging.getLogger(__name__)


def first_per_key(table: pa.Table, key: str | Sequence[str]) -> pa.Table:
    """One row per `key` (a column, or several together): the first in table order. A
    batch's rows come in Kafka partition and offset order, so a retried batch keeps the same
    rows."""
    columns = [key] if isinstance(key, str) else list(key)
    if table.num_rows == 0:
        return table
    if len(columns) == 1 and pc.count_distinct(table[columns[0]]).as_py() == table.num_rows:
        return table
    indexed = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    first = indexed.group_by(columns, use_threads=False).aggregate([("__row", "min")])
    if first.num_rows == table.num_rows:
        return table
    rows = first["__row_min"].combine_chunks()
    return table.take(pc.take(rows, pc.array_sort_indices(rows)))


def max_timestamp(table: pa.Table, column: str) -> datetime | None:
    if table.num_rows == 0 or column not in table.column_names:
        return None
    value: datetime | None = pc.max(table[column]).as_py()
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def table_for(spec: TableSpec, table: pa.Table, batch_id: int) -> pa.Table:
    """The batch's rows in the spec's columns, order and `batch_id` last."""
    columns = [c for c in spec.column_names if c != "batch_id"]
    selected = table.select(columns)
    batch = pa.array([batch_id] * selected.num_rows, pa.int64())
    return selected.append_column("batch_id", batch)


def error_lines(errors: pa.Table) -> bytes:
    """Rejected records as JSON lines: coordinates, reason and the original bytes."""
    out = io.BytesIO()
    for row in errors.to_pylist():
        raw: bytes | None = row.get("value")
        try:
            text = raw.decode() if raw is not None else None
        except UnicodeDecodeError:
            text = None
        record = {
            "topic": row["kafka_topic"],
            "partition": row["kafka_partition"],
            "offset": row["kafka_offset"],
            "kafka_timestamp": row["kafka_timestamp"],
            "reason": row["reason"],
            "value": text,
            "value_base64": base64.b64encode(raw).decode() if raw is not None else None,
        }
        out.write(orjson.dumps(record, option=orjson.OPT_NAIVE_UTC) + b"\n")
    return out.getvalue()


def raw_lines(values: pa.ChunkedArray) -> bytes:
    """Original records, one per line, gzip at the fastest level (the raw zone is an archive
    read rarely; speed matters more than the last 20% of size)."""
    body = b"\n".join(v for v in values.to_pylist() if v is not None) + b"\n"
    return gzip.compress(body, compresslevel=1, mtime=0)


def raw_object_key(date: str, hour: str, batch_id: int, part: int = 0) -> str:
    return f"{RAW_PREFIX}/date={date}/hour={hour}/batch_id={batch_id}/part-{part:05d}.json.gz"


def write_raw_objects(
    s3: Any, bucket: str, records: pa.Table, batch_id: int, part: int = 0
) -> list[CommittedObject]:
    """Every record's original bytes, one gzip JSON-lines object per Kafka hour; `part`: the
    Spark partition that holds them (the executors' write), 0 for a whole batch."""
    objects = []
    for date, hour, rows in partitions_of(records, "kafka_timestamp"):
        key = raw_object_key(date, hour, batch_id, part)
        s3.put_object(Bucket=bucket, Key=key, Body=raw_lines(rows["value"]))
        objects.append(CommittedObject(key=key, rows=rows.num_rows))
    return objects


def write_error_objects(
    s3: Any, bucket: str, errors: pa.Table, batch_id: int, part: int | None = None
) -> list[CommittedObject]:
    """Rejected records (`transforms.ERROR_COLUMNS`) under errors/, by the hour Kafka
    received them; `part` as for the raw zone (None: the whole batch's name)."""
    objects = []
    for date, hour, rows in partitions_of(errors, "kafka_timestamp"):
        key = error_object_key(date, hour, batch_id, part)
        body = gzip.compress(error_lines(rows), compresslevel=6, mtime=0)
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        objects.append(CommittedObject(key=key, rows=rows.num_rows))
    return objects


class LakeWriter(DatasetWriter):
    """The shared data-set writer (`write_table`, `commit`), plus the raw zone and the errors
    area of the stream for a whole batch (the executors call the same functions per Spark
    partition: `stream_processor.executor_writes`)."""

    def write_raw(self, records: pa.Table, batch_id: int) -> list[str]:
        return [o.key for o in write_raw_objects(self.s3, self.bucket, records, batch_id)]

    def write_errors(self, errors: pa.Table, batch_id: int) -> list[str]:
        return [o.key for o in write_error_objects(self.s3, self.bucket, errors, batch_id)]
