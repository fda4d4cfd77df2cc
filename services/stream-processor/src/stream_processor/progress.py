"""What Spark recorded about a micro-batch before running it: its watermark and input offsets.

Spark writes `<checkpoint>/offsets/<batch id>` before the batch runs (its offset log):

    v1
    {"batchWatermarkMs":1764324000000,"batchTimestampMs":1764324120000,"conf":{...}}
    {"clickstream.events":{"0":1234,"1":1180}}

The second line holds the event-time watermark the batch runs with; the third, one line per
source, the offsets where its input ends. The writers copy both into the batch's commit
marker, so the late-data correction pass knows, from the lake alone, which windows the stream
has closed and whether the lake already holds every event those windows saw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import SparkSession

from clickstream_common.lake import SourceOffsets


@dataclass(frozen=True)
class BatchProgress:
    watermark: datetime | None
    source_offsets: SourceOffsets | None
    # For a query that reads the lake's events (`lake_events_source`): the newest lake batch
    # its input reached, whose marker holds the bus offsets.
    lake_batch: int | None = None


def _source_offset(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _offsets(parsed: Any) -> SourceOffsets | None:
    """Kafka's offsets ({topic: {partition: offset}}); None for another source's form."""
    if not isinstance(parsed, dict):
        return None
    result: SourceOffsets = {}
    for topic, partitions in parsed.items():
        if not isinstance(partitions, dict):
            return None
        try:
            result[str(topic)] = {str(p): int(o) for p, o in partitions.items()}
        except (TypeError, ValueError):
            return None
    return result


def _lake_batch(parsed: Any) -> int | None:
    """The lake events source's offset ({"batch": N}); None for another source's form."""
    if isinstance(parsed, dict) and set(parsed) == {"batch"} and isinstance(parsed["batch"], int):
        return int(parsed["batch"])
    return None


def parse_offset_log(text: str) -> BatchProgress:
    """An offset log entry -> (watermark, offsets of the one source); pure."""
    lines = [line for line in text.splitlines() if line.strip()]
    watermark: datetime | None = None
    if len(lines) > 1:
        metadata = json.loads(lines[1])
        # 0 (the epoch): no event seen yet, nothing is closed.
        millis = int(metadata.get("batchWatermarkMs", 0) or 0)
        watermark = datetime.fromtimestamp(millis / 1000, UTC)
    source = _source_offset(lines[2]) if len(lines) == 3 else None
    return BatchProgress(watermark, _offsets(source), _lake_batch(source))


def batch_progress(spark: SparkSession, checkpoint: str, batch_id: int) -> BatchProgress:
    """Read a batch's offset log entry through Hadoop's file system (a path or s3a://)."""
    jvm: Any = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(f"{checkpoint.rstrip('/')}/offsets/{batch_id}")
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    stream = fs.open(path)
    try:
        text = jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()
    return parse_offset_log(str(text))
