"""Backfill and reprocess: data sets rebuilt for a time range from the raw zone.

After a fix to a transform, or to rebuild a data set the lake lost, this job reads the raw
zone (every record the processor consumed, original bytes) and runs the streaming job's own
functions on it in batch mode: `stream_processor.transforms` parses and cleans the records,
then aggregates the events, exactly as the streaming queries do, and the correction pass's
`aggregate_ready`/`first_copies` keep the first copy of each event as the warehouse does. The
rows go through the normal path: Parquet objects and a commit marker per data set and hour
(`LakeWriter`), named as correction batches (`clickstream_common.lake.BatchName`), which the
loader loads like any other batch and which win over the stream's rows (the ordering rule is
defined in `clickstream_common.lake`); sessions replace the user's sessions in the span they
cover. So the warehouse ends up with what streaming produces for the same events once the
correction pass has made every window final.

Which raw hours hold the range's events: the clock policy bounds an event time to at most
`max_ahead` after and `max_behind` before the time the collector received it, so events of
[start, end) were received within [start - max_ahead, end + max_behind), up to now. Sessions
that start in the range are whole when read from a gap before it to the longest session
after it (`BACKFILL_MAX_SESSION_HOURS`).

`events` rows go the same way; the warehouse keeps the first copy of an event, so a backfill
adds the events it lacks and leaves the ones it holds as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.compute as pc

from clickstream_common.lake import (
    HOUR,
    RAW_PREFIX,
    BatchKind,
    BatchName,
    commit_marker_key,
    hours_between,
    list_commit_markers,
    stream_batch_of_object,
)
from clickstream_common.schema import DEFAULT_CLOCK_POLICY, ClockPolicy
from clickstream_common.tables import ACTIVE_USERS_SPAN, EVENTS, SESSIONS, TABLES
from orchestration.lakefiles import RAW, read_hour
from orchestration.settings import Settings

log = logging.getLogger(__name__)

PUBLISH_MARGIN = timedelta(minutes=1)
DATASETS = tuple(TABLES)


@dataclass(frozen=True)
class BackfillPlan:
    start: datetime
    end: datetime
    datasets: tuple[str, ...]
    read_from: datetime  # event times read (sessions need a gap before the range)
    read_to: datetime
    raw_hours: tuple[datetime, ...]  # receive hours of the raw zone that can hold them

    @property
    def chunks(self) -> list[tuple[datetime, datetime]]:
        """The range cut at whole hours: one batch per data set and chunk."""
        return [
            (max(h, self.start), min(h + HOUR, self.end))
            for h in hours_between(self.start, self.end)
        ]


def plan(
    start: datetime,
    end: datetime,
    datasets: Sequence[str],
    session_gap: timedelta,
    settings: Settings,
    now: datetime,
    policy: ClockPolicy = DEFAULT_CLOCK_POLICY,
) -> BackfillPlan:
    """What a backfill of [start, end) reads (pure)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if not start < end:
        raise ValueError(f"empty range {start.isoformat()} .. {end.isoformat()}")
    unknown = set(datasets) - set(TABLES)
    if unknown or not datasets:
        raise ValueError(f"unknown data sets {sorted(unknown)}; known: {', '.join(TABLES)}")
    read_from = start
    read_to = end + ACTIVE_USERS_SPAN  # the 5-minute windows that start in the range
    if SESSIONS.name in datasets:
        read_from = start - session_gap
        read_to = max(read_to, end + timedelta(hours=settings.backfill_max_session_hours))
    received_from = read_from - policy.max_ahead
    # The raw zone is partitioned by Kafka's time, a little after the collector's receive time.
    received_to = min(now, read_to + policy.max_behind + PUBLISH_MARGIN)
    return BackfillPlan(
        start,
        end,
        tuple(d for d in DATASETS if d in datasets),
        read_from,
        read_to,
        tuple(hours_between(received_from, received_to)),
    )


@dataclass
class BackfillReport:
    markers: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    raw_objects: int = 0
    events_batch: int = -1

    def as_dict(self) -> dict[str, Any]:
        return {
            "markers": self.markers,
            "rows": self.rows,
            "raw_objects": self.raw_objects,
            "events_batch": self.events_batch,
        }


def newest_events_batch(s3: Any, bucket: str) -> int:
    """The events batch the backfill's correction batches are numbered after: the one the
    correction pass last computed from, else the newest committed one (0 if none)."""
    from stream_processor.correction import LakeIndex

    state = LakeIndex(s3, bucket).load_state()
    if state.events_batch >= 0:
        return int(state.events_batch)
    listed = list_commit_markers(s3, bucket, EVENTS.name, BatchKind.STREAM)
    batches = [stream_batch_of_object("/" + m.key.rsplit("/", 1)[-1]) for m in listed]
    return max((b for b in batches if b is not None), default=0)


def raw_records(spark: Any, paths: Sequence[str]) -> Any:
    """Raw-zone lines as the records the streaming job reads from Kafka: the bytes, and the
    end of their receive hour (from the raw zone's folder) as their timestamp. The raw zone
    keeps no Kafka coordinates, which only the errors/ zone uses (a backfill does not
    rewrite it).

    The timestamp is what the clock policy bounds an event time by, never later than the
    event's `received_at` (`transforms.bounded_event_time`): the hour's end is the latest
    time Kafka can have recorded the record, so an event the collector received gets the
    same time as in the stream. Only a record whose own `received_at` lies ahead of Kafka's
    time (a producer that bypassed the collector) can be bounded to a later time than the
    stream gave it, by at most an hour."""
    from pyspark.sql import functions as F

    hour = F.regexp_extract(F.input_file_name(), r"date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})", 0)
    stamp = F.to_timestamp(
        F.regexp_replace(F.regexp_replace(hour, "date=", ""), "/hour=", " "), "yyyy-MM-dd HH"
    )
    return spark.read.text(list(paths)).select(
        F.col("value").cast("binary").alias("value"),
        F.lit(RAW_PREFIX).alias("topic"),
        F.lit(None).cast("int").alias("partition"),
        F.lit(None).cast("long").alias("offset"),
        (stamp + F.expr("INTERVAL 1 HOUR") - F.expr("INTERVAL 1 MICROSECOND")).alias("timestamp"),
    )


Progress = Callable[[str], None]


def _log(message: str) -> None:
    log.info("backfill: %s", message)


def backfill(
    spark: Any,
    s3: Any,
    bucket: str,
    backfill_plan: BackfillPlan,
    processor: Any,
    progress: Progress = _log,
) -> BackfillReport:
    """Rebuild the planned data sets; returns the commit markers written (for the loader)."""
    from pyspark.sql import functions as F

    from stream_processor import transforms
    from stream_processor.correction import aggregate_ready, first_copies, write_corrections
    from stream_processor.sinks import LakeWriter, table_for

    report = BackfillReport()
    p = backfill_plan
    objects = [o for h in p.raw_hours for o in read_hour(s3, bucket, RAW, h)]
    report.raw_objects = len(objects)
    progress(f"reading {len(objects)} raw objects of {len(p.raw_hours)} hour(s)")
    if not objects:
        return report
    records = raw_records(spark, [f"s3a://{bucket}/{o.key}" for o in objects])
    cleaned = transforms.clean_events(transforms.parse_records(records))
    events = (
        transforms.events(cleaned)
        .where(
            (F.col("event_time") >= F.lit(p.read_from)) & (F.col("event_time") < F.lit(p.read_to))
        )
        # As read back from the lake: first_copies keeps the oldest copy of an event, and
        # among copies in the raw zone the first one received.
        .withColumn("batch_id", F.lit(0).cast("long"))
    )
    events = first_copies(events).cache()
    ready = aggregate_ready(events, processor)
    windows = transforms.window_rows(transforms.window_aggregates(ready)).cache()
    sessions = transforms.sessions(ready, processor.processor_session_gap).cache()

    report.events_batch = newest_events_batch(s3, bucket)
    writer = LakeWriter(s3, bucket)
    wanted = set(p.datasets)
    window_sets = [spec for spec in transforms.WINDOW_DATASETS if spec.name in wanted]
    for i, (lo, hi) in enumerate(p.chunks, start=1):

        def between(column: str, lo: datetime = lo, hi: datetime = hi) -> Any:
            return (F.col(column) >= F.lit(lo)) & (F.col(column) < F.lit(hi))

        written_at = datetime.now(UTC)
        chunk_rows: dict[str, int] = {}
        if EVENTS.name in wanted:
            table = events.where(between("event_time")).toArrow()
            if table.num_rows:
                name = BatchName.correction(report.events_batch, written_at)
                writer.write_table(
                    EVENTS.name, table_for(EVENTS, table, name.batch_id), name, EVENTS.time_column
                )
                report.markers.append(commit_marker_key(EVENTS.name, name))
                chunk_rows[EVENTS.name] = table.num_rows
        window_tables = {}
        if window_sets:
            rows = windows.where(between("window_start")).toArrow()
            for spec in window_sets:
                window_tables[spec.name] = rows.filter(pc.equal(rows["dataset"], spec.name))
        session_table = (
            sessions.where(between("session_start")).toArrow() if SESSIONS.name in wanted else None
        )
        markers, rows_written = write_corrections(
            writer, report.events_batch, window_tables, session_table, written_at
        )
        report.markers += markers
        chunk_rows |= rows_written
        for dataset, n in chunk_rows.items():
            report.rows[dataset] = report.rows.get(dataset, 0) + n
        progress(f"hour {i}/{len(p.chunks)} ({lo:%Y-%m-%d %H:%M}): {chunk_rows or 'no rows'}")
    events.unpersist()
    windows.unpersist()
    sessions.unpersist()
    return report
