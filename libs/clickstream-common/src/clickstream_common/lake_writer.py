"""The one writer of processed data sets: Parquet objects, then the commit marker.

Every producer of lake data sets writes through it, the Spark job's micro-batches and the
services that are not Spark (the anomaly detector), so the objects and markers the loader
reads have one layout (`clickstream_common.lake`). Needs pyarrow (`clickstream-common[lake]`).
Object names derive from the batch's name only (its id for a stream batch; the moment it was
written too for a correction): writing the same batch again overwrites it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clickstream_common.lake import (
    BatchName,
    CommitMarker,
    CommittedObject,
    SourceOffsets,
    commit_marker_key,
    processed_object_key,
)

log = logging.getLogger(__name__)


def partitions_of(table: pa.Table, time_column: str) -> Iterable[tuple[str, str, pa.Table]]:
    """Split an Arrow table into (date, hour, rows) by a UTC timestamp column."""
    if table.num_rows == 0:
        return
    times = table[time_column]
    dates = pc.strftime(times, format="%Y-%m-%d")
    hours = pc.strftime(times, format="%H")
    keys = pc.binary_join_element_wise(dates, hours, "/")
    for key in sorted(pc.unique(keys).to_pylist()):
        date, hour = key.split("/")
        yield date, hour, table.filter(pc.equal(keys, key))


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def write_dataset_objects(
    s3: Any,
    bucket: str,
    dataset: str,
    table: pa.Table,
    batch: int | BatchName,
    time_column: str,
    part: int | None = None,
) -> list[CommittedObject]:
    """A data set's rows as Parquet objects, one per date/hour of `time_column`, and what a
    commit marker lists of them. The one writer of processed objects: the driver-side
    `DatasetWriter.write_table` calls it for a whole batch, the stream processor's executors
    for the rows of one Spark partition (`part`, in the object names)."""
    objects = []
    for date, hour, rows in partitions_of(table, time_column):
        key = processed_object_key(dataset, date, hour, batch, part)
        s3.put_object(Bucket=bucket, Key=key, Body=parquet_bytes(rows))
        objects.append(CommittedObject(key=key, rows=rows.num_rows))
    return objects


class DatasetWriter:
    """Writes processed data sets to one bucket: Parquet objects, then the commit marker."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def write_table(
        self,
        dataset: str,
        table: pa.Table,
        batch_id: int | BatchName,
        time_column: str,
        max_received_at: datetime | None = None,
        *,
        watermark: datetime | None = None,
        source_offsets: SourceOffsets | None = None,
        keep_empty: bool = False,
    ) -> CommitMarker | None:
        """Parquet objects per date/hour of `time_column`, then the commit marker, last.

        `batch_id` is a stream batch's id or a correction's name (`BatchName`); `watermark`
        and `source_offsets` are what a streaming query recorded for the batch (the late-data
        correction pass reads them); `keep_empty` commits a marker without objects for a
        batch without rows.
        """
        if table.num_rows == 0 and not keep_empty:
            return None
        name = batch_id if isinstance(batch_id, BatchName) else BatchName.stream(batch_id)
        objects = write_dataset_objects(self.s3, self.bucket, dataset, table, name, time_column)
        return self.commit(
            dataset,
            name,
            objects,
            max_received_at,
            watermark=watermark,
            source_offsets=source_offsets,
        )

    def commit(
        self,
        dataset: str,
        batch_id: int | BatchName,
        objects: list[CommittedObject],
        max_received_at: datetime | None = None,
        *,
        watermark: datetime | None = None,
        source_offsets: SourceOffsets | None = None,
    ) -> CommitMarker:
        """The commit marker of objects already written (by this process or by executors):
        written last, it makes the batch loadable."""
        name = batch_id if isinstance(batch_id, BatchName) else BatchName.stream(batch_id)
        marker = CommitMarker(
            dataset=dataset,
            batch_id=name.batch_id,
            objects=objects,
            committed_at=datetime.now(UTC),
            max_received_at=max_received_at,
            watermark=watermark,
            source_offsets=source_offsets,
        )
        self.s3.put_object(
            Bucket=self.bucket,
            Key=commit_marker_key(dataset, name),
            Body=marker.model_dump_json().encode(),
            ContentType="application/json",
        )
        log.info(
            "batch committed",
            extra={
                "dataset": dataset,
                "batch_id": name.batch_id,
                "rows": sum(o.rows for o in objects),
                "objects": len(objects),
            },
        )
        return marker
