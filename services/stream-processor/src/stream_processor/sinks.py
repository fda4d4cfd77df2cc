"""Per-micro-batch writers for the lake. Every object name derives from the batch id, so a
batch that Spark retries after a crash overwrites its own output instead of adding to it."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clickstream_common.lake import (
    RAW_PREFIX,
    CommitMarker,
    CommittedObject,
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


class LakeWriter:
    """Writes the raw zone through Spark (S3A) and processed data sets from the driver."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def write_raw(self, records: DataFrame, batch_id: int) -> None:
        # Dynamic partition overwrite replaces only this batch's partitions on a retry.
        (
            records.withColumn("batch_id", F.lit(batch_id))
            .write.mode("overwrite")
            .option("compression", "gzip")
            .partitionBy("date", "hour", "batch_id")
            .text(f"s3a://{self.bucket}/{RAW_PREFIX}")
        )

    def write_processed(
        self, dataset: str, rows: DataFrame, batch_id: int, time_column: str
    ) -> CommitMarker | None:
        """Write a (small) aggregate batch as Parquet objects, then its commit marker last."""
        table = rows.toArrow()
        if table.num_rows == 0:
            return None
        objects = []
        for date, hour, part in partitions_of(table, time_column):
            key = processed_object_key(dataset, date, hour, batch_id)
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=parquet_bytes(part))
            objects.append(CommittedObject(key=key, rows=part.num_rows))
        marker = CommitMarker(
            dataset=dataset, batch_id=batch_id, objects=objects, committed_at=datetime.now(UTC)
        )
        self.s3.put_object(
            Bucket=self.bucket,
            Key=commit_marker_key(dataset, batch_id),
            Body=marker.model_dump_json().encode(),
            ContentType="application/json",
        )
        log.info(
            "batch committed",
            extra={"dataset": dataset, "batch_id": batch_id, "rows": table.num_rows},
        )
        return marker
