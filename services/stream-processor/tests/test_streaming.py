"""The stateful transforms in a real stream (a file source standing in for Kafka): late
events are dropped from the aggregates and counted, duplicates in later micro-batches are
dropped, sessions are emitted once the watermark has passed them."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clickstream_common.tables import EVENT_COUNTS_MINUTE, TableSpec
from stream_processor import metrics, transforms

pytestmark = pytest.mark.spark


def kafka_like(spark: SparkSession, folder: Path) -> DataFrame:
    lines = spark.readStream.format("text").load(str(folder))
    return lines.select(
        F.col("value").cast("binary").alias("value"),
        F.lit("clickstream.events").alias("topic"),
        F.lit(0).alias("partition"),
        F.lit(0).cast("long").alias("offset"),
        F.current_timestamp().alias("timestamp"),
    )


def test_late_events_duplicates_and_sessions_in_a_stream(
    spark: SparkSession,
    tmp_path: Path,
    event: Callable[..., bytes],
    dataset_rows: Callable[[DataFrame, TableSpec, int], DataFrame],
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    events = transforms.without_bots(
        transforms.deduplicate(transforms.aggregate_input(kafka_like(spark, source)), "2 minutes"),
        True,
    )
    counts: dict[tuple[str, str], tuple[int, int]] = {}

    def windows_batch(df: DataFrame, batch_id: int) -> None:
        for r in dataset_rows(df, EVENT_COUNTS_MINUTE, batch_id).collect():
            # Update mode: the newest emission of a window is its value.
            counts[(r["window_start"].strftime("%H:%M"), r["event_type"])] = (
                r["events"],
                r["unique_users"],
            )

    closed: list[dict[str, Any]] = []
    windows = (
        transforms.window_aggregates(events)
        .writeStream.outputMode("update")
        .option("checkpointLocation", str(tmp_path / "ck-windows"))
        .foreachBatch(windows_batch)
        .start()
    )
    sessions = (
        transforms.sessions(events, "10 minutes")
        .writeStream.outputMode("append")
        .option("checkpointLocation", str(tmp_path / "ck-sessions"))
        .foreachBatch(lambda df, _: closed.extend(r.asDict() for r in df.collect()))
        .start()
    )

    def feed(name: str, lines: list[bytes]) -> None:
        tmp = tmp_path / f"{name}.tmp"
        tmp.write_bytes(b"\n".join(lines) + b"\n")
        tmp.rename(source / f"{name}.txt")  # atomically visible to the file source
        windows.processAllAvailable()
        sessions.processAllAvailable()

    try:
        first = event("1", "page_view", "2026-11-27T12:00:01Z", user_id="u1")
        feed("1", [first, event("2", "page_view", "2026-11-27T12:00:05Z", user_id="u2"), first])
        # A retried request: the same event again in a later micro-batch.
        feed("2", [event("3", "page_view", "2026-11-27T12:10:00Z", user_id="u1"), first])
        # The watermark is now 12:08: 12:00:30 is late, 12:09 is not.
        feed(
            "3",
            [
                event("4", "page_view", "2026-11-27T12:00:30Z", user_id="u3"),
                event("5", "page_view", "2026-11-27T12:09:00Z", user_id="u3"),
                event("6", "page_view", "2026-11-27T12:40:00Z", user_id="u9"),
            ],
        )
        feed("4", [event("7", "page_view", "2026-11-27T13:40:00Z", user_id="u9")])
    finally:
        windows.stop()
        sessions.stop()

    assert counts == {
        ("12:00", "page_view"): (2, 2),
        ("12:10", "page_view"): (1, 1),
        ("12:09", "page_view"): (1, 1),
        ("12:40", "page_view"): (1, 1),
        ("13:40", "page_view"): (1, 1),
    }
    late = sum(metrics.late_rows(p) for p in windows.recentProgress)
    assert late == 1
    # Sessions close once the watermark passes their end plus the gap; 13:40 is still open.
    got = sorted((s["user_key"], s["session_start"].strftime("%H:%M"), s["events"]) for s in closed)
    assert got == [("u1", "12:00", 2), ("u2", "12:00", 1), ("u3", "12:09", 1), ("u9", "12:40", 1)]
