"""Late events into the final aggregates: the correction pass.

The streaming job keeps the live layer: its stateful queries drop an event whose time is
behind their watermark (it is still written to the `events` data set, so it reaches
`analytics.events`), and a window or session is final once the watermark passes it. This
pass makes the final values exact: it recomputes, from the lake's `events` data set, every
closed window and session that received a late event, with the streaming job's own
functions (`transforms.window_aggregates`, `window_rows`, `sessions`) run on static frames,
and writes the results as **correction batches** through the normal path (Parquet objects,
then a commit marker; the loader and its ledger do the rest). Corrections outrank the stream
rows they replace, and a correction computed from more events outranks an older one
(`clickstream_common.lake` defines the rule).

How it knows what to recompute, from the lake alone:

* Every commit marker carries what Spark recorded for its batch (`progress.py`): the
  watermark the batch ran with (stateful queries) and the offsets where its input ended.
* For each new batch L of the `events` data set, the first marker of the windows query (and
  of the sessions query) whose input reached L's end offsets covers L: every record of L went
  through that query at or before that batch, so with a watermark at most that marker's. An
  event of L whose time is at or behind it may have been dropped as late: a **suspect**.
  Events after it were on time and are left alone. Lake batches no marker covers yet wait.
* The **horizon** of a query is the watermark of its newest marker whose input the lake has
  fully written (the events data set's offsets reach its own): windows that end at or before
  it are closed in the stream, and the lake holds every event the stream counted in them.
* A suspect's minute is recomputed (its 1-minute windows and the five 5-minute windows
  around it) once all of those windows are behind the windows horizon; its user's session
  once the session (last event plus the gap) is behind the sessions horizon. Until then it
  stays pending in the pass's state (`corrections/state.json`).
* A late event can merge or move sessions: the correction holds every session of the user
  between the first and the last affected one, read from a range widened until each is
  whole, and the loader deletes the older rows of that user inside that span.

`correct_pending` is the incremental pass (the local stack runs it every few minutes;
Airflow can run it hourly); `correct_range` recomputes every closed window and session of a
time range (after a fix). Both are idempotent: from the same lake they write the same rows
with the same batch_id, and the loader's merge leaves the warehouse as it was.
`python -m stream_processor correct [--from T --to T] [--every S]` runs them with a progress
bar.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from botocore.exceptions import ClientError
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, ValidationError
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from clickstream_common.arrow import arrow_schema
from clickstream_common.lake import (
    CORRECTION_STATE_KEY,
    HOUR,
    PROCESSED_PREFIX,
    BatchKind,
    BatchName,
    CommitMarker,
    commit_marker_key,
    floor_hour,
    hours_between,
    list_commit_markers,
    offsets_cover,
    parse_commit_marker_key,
    stream_batch_of_object,
)
from clickstream_common.logs import configure_logging
from clickstream_common.probes import ProbeServer
from clickstream_common.tables import (
    ACTIVE_USERS_5M,
    ACTIVE_USERS_SPAN,
    EVENTS,
    IDENTITIES,
    SESSIONS,
    TableSpec,
)
from stream_processor import identities, transforms
from stream_processor.config import Settings, interval
from stream_processor.sinks import LakeWriter, table_for

log = logging.getLogger(__name__)

MINUTE = timedelta(minutes=1)
WINDOW_MARKERS = ACTIVE_USERS_5M  # every aggregated event is in an active-users window

# What the aggregates and sessions read of an event, and the batch that brought it (the
# oldest copy of an event wins, as in the warehouse).
AGGREGATE_READ = (*transforms.AGGREGATE_SOURCE_COLUMNS, "batch_id")
IDENTITY_READ = ("anonymous_id", "user_id", "batch_id", "first_seen_at", "event_id")

RUNS = Counter("processor_correction_runs_total", "Correction passes completed")
FAILURES = Counter("processor_correction_failures_total", "Correction passes that failed")
LATE = Counter(
    "processor_correction_late_events_total",
    "Events found behind the watermark of the query that read them (windows or sessions)",
    ["query"],
)
ROWS = Counter("processor_correction_rows_total", "Rows written by correction batches", ["dataset"])
PENDING = Gauge(
    "processor_correction_pending",
    "Late events waiting for their windows or sessions to close",
    ["kind"],
)
SKIPPED_SESSIONS = Counter(
    "processor_correction_sessions_skipped_total",
    "Users whose late session is longer than PROCESSOR_CORRECTION_MAX_SESSION_HOURS",
)
DURATION = Histogram(
    "processor_correction_duration_seconds",
    "Duration of a correction pass",
    buckets=(1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600),
)
LAST_SUCCESS = Gauge(
    "processor_correction_last_success_timestamp_seconds", "When the last pass succeeded"
)


def utc(t: datetime) -> datetime:
    """A timestamp read back from Spark or Arrow, in UTC (naive ones are UTC already)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


# --------------------------------------------------------------------------------------------
# State


class PendingSession(BaseModel):
    """Late events of one user whose session was not yet closed (or not yet whole)."""

    user_key: str
    first: datetime
    last: datetime


class CorrectionState(BaseModel):
    """Where the incremental pass stands; `corrections/state.json` in the lake bucket."""

    version: int = 1
    events_batch: int = -1  # the newest events batch the last pass computed from
    # Events batches up to these have been checked for late events against each query.
    windows_examined: int = -1
    sessions_examined: int = -1
    # Markers of each stateful query listed before the one that covers the next events batch.
    windows_marker: str = ""
    sessions_marker: str = ""
    windows_horizon: datetime | None = None
    sessions_horizon: datetime | None = None
    pending_minutes: list[datetime] = []
    pending_sessions: list[PendingSession] = []
    # The newest identities marker whose links the windows were corrected for.
    identities_marker: str = ""
    updated_at: datetime | None = None


# --------------------------------------------------------------------------------------------
# The lake (I/O edge)


@dataclass(frozen=True)
class Committed:
    """A stream commit marker and its key."""

    key: str
    marker: CommitMarker

    @property
    def batch_id(self) -> int:
        return self.marker.batch_id


class LakeIndex:
    """Reads markers, lists and reads event objects, and keeps the pass's state.

    The objects are read with Arrow's S3 file system (C++, parallel): a lake partition holds
    one small object per micro-batch, and Arrow reads a few thousand of them in seconds where
    Spark's s3a opens them one after the other. Only the events the recomputation needs (a
    few minutes around each late event, the users whose sessions changed) go on to Spark, which
    computes with the streaming job's own functions.
    """

    def __init__(self, s3: Any, bucket: str, filesystem: pafs.FileSystem | None = None) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.filesystem = filesystem

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeIndex:
        return cls(
            settings.s3_client(),
            settings.s3_bucket,
            pafs.S3FileSystem(**settings.arrow_filesystem_kwargs()),
        )

    def path(self, key: str) -> str:
        """An object's path in `filesystem`."""
        return f"{self.bucket}/{key}"

    def read(
        self,
        keys: Sequence[str],
        columns: Sequence[str],
        where: ds.Expression | None = None,
        spec: TableSpec = EVENTS,
    ) -> pa.Table:
        """Columns of the objects `keys` of a data set (events unless `spec` says), rows
        matching `where` (columns an object predates are NULL: its schema is the current
        spec's)."""
        schema = arrow_schema(spec, columns)
        if not keys:
            return schema.empty_table()
        dataset = ds.dataset(
            [self.path(k) for k in keys],
            schema=schema,
            format="parquet",
            filesystem=self.filesystem,
        )
        # One chunk: PySpark 4.2's createDataFrame(pyarrow.Table) drops every row after an
        # empty chunk, and a filtered read has one chunk per object, most of them empty.
        return dataset.to_table(columns=list(columns), filter=where).combine_chunks()

    def committed(self, dataset: str, start_after: str = "") -> list[Committed]:
        """Stream commit markers of a data set after a key, in batch order, with their body."""
        listed = list_commit_markers(self.s3, self.bucket, dataset, BatchKind.STREAM, start_after)

        def read(key: str) -> Committed | None:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            try:
                return Committed(key, CommitMarker.model_validate_json(body))
            except ValidationError:
                log.warning("invalid commit marker skipped", extra={"marker": key})
                return None

        with ThreadPoolExecutor(max_workers=8) as pool:
            found = list(pool.map(read, [m.key for m in listed]))
        return [c for c in found if c is not None]

    def event_objects(self, hours: Iterable[datetime], upto: int) -> list[str]:
        """Keys of the events objects of these hours from stream batches up to `upto`.

        Batches commit in order, so every object of a batch at or below a committed batch
        belongs to a committed batch; objects of later batches may still be in flight."""
        keys: list[str] = []
        for hour in sorted(set(hours)):
            prefix = f"{PROCESSED_PREFIX}/{EVENTS.name}/date={hour:%Y-%m-%d}/hour={hour:%H}/"
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    batch = stream_batch_of_object(item["Key"])
                    if batch is not None and batch <= upto and item["Key"].endswith(".parquet"):
                        keys.append(item["Key"])
        return keys

    def identity_objects(self) -> list[str]:
        """Keys of the identities objects of every committed stream batch."""
        markers = list_commit_markers(self.s3, self.bucket, IDENTITIES.name, BatchKind.STREAM)
        parsed = (parse_commit_marker_key(m.key) for m in markers)
        newest = max((p[1] for p in parsed if p is not None), default=-1)
        keys: list[str] = []
        if newest < 0:
            return keys
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{PROCESSED_PREFIX}/{IDENTITIES.name}/date="
        )
        for page in pages:
            for item in page.get("Contents", []):
                batch = stream_batch_of_object(item["Key"])
                if batch is not None and batch <= newest and item["Key"].endswith(".parquet"):
                    keys.append(item["Key"])
        return keys

    def identity_rows(self, anonymous_ids: Iterable[str]) -> pa.Table:
        """The committed identities rows of these anonymous ids (every link of each: the
        first one wins, `identities.stitched_user_key` picks it)."""
        wanted = sorted(set(anonymous_ids))
        return self.read(
            self.identity_objects() if wanted else [],
            IDENTITY_READ,
            ds.field("anonymous_id").isin(pa.array(wanted, pa.string())),
            spec=IDENTITIES,
        )

    def load_state(self) -> CorrectionState:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=CORRECTION_STATE_KEY)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return CorrectionState()
            raise
        return CorrectionState.model_validate_json(body)

    def save_state(self, state: CorrectionState) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=CORRECTION_STATE_KEY,
            Body=state.model_dump_json(indent=2).encode(),
            ContentType="application/json",
        )


# --------------------------------------------------------------------------------------------
# Planning (pure)


def _covers(query: CommitMarker, lake: CommitMarker) -> bool:
    """The stateful batch `query` has read everything the events batch `lake` holds."""
    if query.source_offsets is not None and lake.source_offsets is not None:
        return offsets_cover(query.source_offsets, lake.source_offsets)
    # Without offsets (a source that records none): by receive time, a weaker test.
    if query.max_received_at is not None and lake.max_received_at is not None:
        return query.max_received_at >= lake.max_received_at
    return False


def cover(
    lake_batches: Sequence[Committed], query_markers: Sequence[Committed]
) -> tuple[dict[int, datetime], int]:
    """The watermark bounding each events batch's records in a stateful query, in batch
    order, up to the first batch no marker covers yet; and how many query markers precede
    the last covering one (they are not needed again)."""
    result: dict[int, datetime] = {}
    i = 0
    used = 0
    for batch in lake_batches:
        while i < len(query_markers) and not (
            query_markers[i].marker.watermark is not None
            and _covers(query_markers[i].marker, batch.marker)
        ):
            i += 1
        if i == len(query_markers):
            break
        watermark = query_markers[i].marker.watermark
        assert watermark is not None  # checked in the loop
        result[batch.batch_id] = watermark
        used = i
    return result, used


def horizon(query_markers: Sequence[Committed], lake_end: CommitMarker) -> datetime | None:
    """The newest watermark of a query whose whole input the lake already holds."""
    found: datetime | None = None
    for item in query_markers:
        marker = item.marker
        if marker.watermark is None:
            continue
        if marker.source_offsets is not None and lake_end.source_offsets is not None:
            reached = offsets_cover(lake_end.source_offsets, marker.source_offsets)
        elif marker.max_received_at is not None and lake_end.max_received_at is not None:
            reached = lake_end.max_received_at >= marker.max_received_at
        else:
            reached = False
        if reached and (found is None or marker.watermark > found):
            found = marker.watermark
    return found


def ready_minutes(minutes: Iterable[datetime], windows_horizon: datetime | None) -> list[datetime]:
    """Minutes whose every window (1-minute, and each 5-minute one containing it) is closed."""
    if windows_horizon is None:
        return []
    return sorted(m for m in set(minutes) if m + ACTIVE_USERS_SPAN <= windows_horizon)


def minutes_to_read(minutes: Iterable[datetime]) -> list[datetime]:
    """The minutes whose events the windows of `minutes` need: 4 before to 4 after."""
    needed: set[datetime] = set()
    for m in minutes:
        needed.update(m + k * MINUTE for k in range(-4, 5))
    return sorted(needed)


def active_window_starts(minutes: Iterable[datetime]) -> list[datetime]:
    """Starts of the 5-minute windows that contain one of `minutes`."""
    return sorted({m - k * MINUTE for m in minutes for k in range(5)})


def merge_pending(pending: Iterable[PendingSession], gap: timedelta) -> list[PendingSession]:
    """One entry per user and cluster of late times closer than a few gaps apart."""
    by_user: dict[str, list[PendingSession]] = {}
    for item in sorted(pending, key=lambda p: (p.user_key, p.first)):
        runs = by_user.setdefault(item.user_key, [])
        if runs and item.first <= runs[-1].last + 4 * gap:
            last = runs[-1]
            runs[-1] = PendingSession(
                user_key=last.user_key, first=last.first, last=max(last.last, item.last)
            )
        else:
            runs.append(item)
    return [run for runs in by_user.values() for run in runs]


@dataclass(frozen=True)
class SessionVerdicts:
    emit: dict[str, tuple[datetime, datetime]]  # user -> (first start, last start) to write
    widen: list[PendingSession]  # closed, but the read range cut a session: read more
    pending: list[PendingSession]  # a session still open in the stream


def judge_sessions(
    seeds: Sequence[PendingSession],
    sessions: dict[str, list[tuple[datetime, datetime]]],
    read_from: datetime,
    read_to: datetime,
    sessions_horizon: datetime | None,
    gap: timedelta,
) -> SessionVerdicts:
    """For each user with late events: write its sessions between the first and the last
    affected one if all are closed and whole in the range read; else read more or wait."""
    emit: dict[str, tuple[datetime, datetime]] = {}
    widen: list[PendingSession] = []
    pending: list[PendingSession] = []
    for seed in seeds:
        spans = sorted(sessions.get(seed.user_key, []))

        def containing(t: datetime, spans: list[tuple[datetime, datetime]] = spans) -> Any:
            return next((s for s in spans if s[0] <= t <= s[1]), None)

        first, last = containing(seed.first), containing(seed.last)
        if first is None or last is None:
            # The events are not in the range read (bots, or not yet committed): wait.
            pending.append(seed)
            continue
        if sessions_horizon is None or last[1] + gap > sessions_horizon:
            pending.append(seed)
        elif first[0] - gap < read_from or last[1] + gap > read_to:
            widen.append(seed)
        else:
            lo, hi = emit.get(seed.user_key, (first[0], last[0]))
            emit[seed.user_key] = (min(lo, first[0]), max(hi, last[0]))
    return SessionVerdicts(emit, widen, pending)


# --------------------------------------------------------------------------------------------
# Spark: reading the events back and recomputing


def read_events(
    spark: SparkSession, lake: LakeIndex, keys: Sequence[str], where: ds.Expression | None = None
) -> DataFrame:
    """The events of these objects that match `where`, as a Spark frame of what the
    aggregates read."""
    return spark.createDataFrame(lake.read(keys, AGGREGATE_READ, where))


def _ranges(times: Iterable[datetime], step: timedelta) -> ds.Expression | None:
    """event_time in the union of [t, t + step) for `times`, merged into contiguous runs."""
    runs: list[list[datetime]] = []
    for t in sorted(set(times)):
        if runs and t <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], t + step)
        else:
            runs.append([t, t + step])
    expression: ds.Expression | None = None
    for lo, hi in runs:
        run = (ds.field("event_time") >= pa.scalar(lo, pa.timestamp("us", tz="UTC"))) & (
            ds.field("event_time") < pa.scalar(hi, pa.timestamp("us", tz="UTC"))
        )
        expression = run if expression is None else expression | run
    return expression


def first_copies(events: DataFrame) -> DataFrame:
    """One row per (source, event_id): the one of the oldest batch, as the warehouse keeps."""
    order = Window.partitionBy("source", "event_id").orderBy("batch_id", "received_at")
    return events.withColumn("_copy", F.row_number().over(order)).where("_copy = 1").drop("_copy")


def aggregate_ready(events: DataFrame, settings: Settings) -> DataFrame:
    """The streaming job's aggregate input, built from the lake's events."""
    return transforms.without_bots(
        transforms.deduplicate(
            transforms.aggregate_columns(first_copies(events)), settings.processor_watermark_delay
        ),
        settings.processor_exclude_bots,
    )


def linked_minutes(
    lake: LakeIndex, links: Sequence[Committed], upto: int, lookback: timedelta
) -> set[datetime]:
    """Minutes with events of the anonymous ids that new identities batches link to a user,
    within `lookback` of the link: their windows count those visitors twice until corrected."""
    keys = [o.key for c in links for o in c.marker.objects]
    linked = lake.read(keys, ("anonymous_id", "first_seen_at"), spec=IDENTITIES)
    if linked.num_rows == 0:
        return set()
    seen = [utc(t) for t in linked["first_seen_at"].to_pylist()]
    start, end = min(seen) - lookback, max(seen) + lookback
    ids = pc.unique(linked["anonymous_id"])
    events = lake.read(
        lake.event_objects(hours_between(start, end), upto),
        ("event_time", "user_key"),
        ds.field("user_key").isin(ids) & _ranges([start], end - start),
    )
    minutes = pc.unique(pc.floor_temporal(events["event_time"], unit="minute"))
    return {utc(m) for m in minutes.to_pylist()}


@dataclass
class Suspects:
    minutes: set[datetime] = field(default_factory=set)
    sessions: list[PendingSession] = field(default_factory=list)
    windows_late: int = 0
    sessions_late: int = 0


def find_suspects(
    lake: LakeIndex,
    batches: Sequence[Committed],
    windows_cover: dict[int, datetime],
    sessions_cover: dict[int, datetime],
    exclude_bots: bool,
) -> Suspects:
    """Events of new batches at or behind the watermark of the query that read them."""
    keys = [o.key for b in batches for o in b.marker.objects]
    table = lake.read(keys, ("batch_id", "event_time", "user_key", "user_agent_info_is_bot"))
    found = Suspects()
    if table.num_rows == 0:
        return found
    if exclude_bots:
        table = table.filter(pc.invert(pc.fill_null(table["user_agent_info_is_bot"], False)))
    ids = [b.batch_id for b in batches]
    timestamp = pa.timestamp("us", tz="UTC")
    where = pc.index_in(table["batch_id"], pa.array(ids, pa.int64()))
    for name, covers in (("windows", windows_cover), ("sessions", sessions_cover)):
        watermarks = pa.array([covers.get(b) for b in ids], timestamp)
        late = pc.fill_null(pc.less_equal(table["event_time"], pc.take(watermarks, where)), False)
        rows = table.filter(late)
        if name == "windows":
            found.windows_late = rows.num_rows
            minutes = pc.floor_temporal(rows["event_time"], unit="minute")
            found.minutes = {utc(m) for m in pc.unique(minutes).to_pylist()}
        else:
            found.sessions_late = rows.num_rows
            by_user = rows.group_by("user_key").aggregate(
                [("event_time", "min"), ("event_time", "max")]
            )
            found.sessions = [
                PendingSession(
                    user_key=r["user_key"],
                    first=utc(r["event_time_min"]),
                    last=utc(r["event_time_max"]),
                )
                for r in by_user.to_pylist()
            ]
    return found


def recompute_windows(
    spark: SparkSession,
    lake: LakeIndex,
    minutes: Sequence[datetime],
    upto: int,
    settings: Settings,
) -> dict[str, pa.Table]:
    """The four windowed data sets' rows of these minutes (windows that hold them), from
    every committed event up to events batch `upto`: the streaming aggregation, static."""
    if not minutes:
        return {}
    read = minutes_to_read(minutes)
    keys = lake.event_objects({floor_hour(m) for m in read}, upto)
    table = lake.read(keys, AGGREGATE_READ, _ranges(read, MINUTE))
    events = spark.createDataFrame(table)
    # The final figures count a visitor linked to a user (identify, login) once.
    links = lake.identity_rows(pc.unique(table["user_key"]).to_pylist())
    ready_events = identities.stitched_user_key(
        aggregate_ready(events, settings), spark.createDataFrame(links)
    )
    rows = transforms.window_rows(transforms.window_aggregates(ready_events))
    per_minute = F.col("window_start").isin(list(minutes))
    active = F.col("window_start").isin(active_window_starts(minutes))
    chosen = rows.where(
        F.when(F.col("dataset") == ACTIVE_USERS_5M.name, active).otherwise(per_minute)
    )
    table = chosen.toArrow()
    return {
        spec.name: table.filter(pc.equal(table["dataset"], spec.name))
        for spec in transforms.WINDOW_DATASETS
    }


@dataclass
class SessionsResult:
    rows: pa.Table | None
    users: int
    pending: list[PendingSession]
    skipped: int


def recompute_sessions(
    spark: SparkSession,
    lake: LakeIndex,
    seeds: Sequence[PendingSession],
    upto: int,
    sessions_horizon: datetime | None,
    settings: Settings,
) -> SessionsResult:
    """Sessions of users with late events, whole, once the stream has closed them."""
    gap = interval(settings.processor_session_gap)
    limit = timedelta(hours=settings.processor_correction_max_session_hours)
    tables: list[pa.Table] = []
    pending: list[PendingSession] = []
    skipped = 0
    corrected_users = 0
    margin = gap + HOUR
    todo = list(seeds)
    while todo:
        read_from = min(s.first for s in todo) - margin
        read_to = max(s.last for s in todo) + margin
        wanted = pa.array(sorted({s.user_key for s in todo}), pa.string())
        where = ds.field("user_key").isin(wanted) & _ranges([read_from], read_to - read_from)
        keys = lake.event_objects(hours_between(read_from, read_to), upto)
        chosen = aggregate_ready(read_events(spark, lake, keys, where), settings)
        computed = transforms.sessions(chosen, settings.processor_session_gap).toArrow()
        spans: dict[str, list[tuple[datetime, datetime]]] = {}
        for row in computed.select(["user_key", "session_start", "session_end"]).to_pylist():
            spans.setdefault(row["user_key"], []).append(
                (utc(row["session_start"]), utc(row["session_end"]))
            )
        verdicts = judge_sessions(todo, spans, read_from, read_to, sessions_horizon, gap)
        pending += verdicts.pending
        if verdicts.emit:
            starts = computed["session_start"]
            keep = pa.array(
                [
                    user in verdicts.emit
                    and verdicts.emit[user][0] <= utc(start) <= verdicts.emit[user][1]
                    for user, start in zip(
                        computed["user_key"].to_pylist(), starts.to_pylist(), strict=True
                    )
                ],
                pa.bool_(),
            )
            tables.append(computed.filter(keep))
            corrected_users += len(verdicts.emit)
        todo = []
        if verdicts.widen:
            margin *= 2
            if margin > limit:
                skipped += len(verdicts.widen)
                log.warning(
                    "late sessions longer than the limit left as the stream closed them",
                    extra={"users": sorted({s.user_key for s in verdicts.widen})[:20]},
                )
            else:
                todo = verdicts.widen
    rows = pa.concat_tables(tables) if tables else None
    return SessionsResult(rows, corrected_users, pending, skipped)


# --------------------------------------------------------------------------------------------
# The passes


@dataclass
class CorrectionReport:
    events_batch: int = -1
    lake_batches: int = 0
    late_events: dict[str, int] = field(default_factory=dict)
    windows_horizon: datetime | None = None
    sessions_horizon: datetime | None = None
    minutes: int = 0
    session_users: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    pending_minutes: int = 0
    pending_sessions: int = 0
    skipped_sessions: int = 0
    markers: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        rows = ", ".join(f"{k} {v}" for k, v in sorted(self.rows.items())) or "none"
        return (
            f"events up to batch {self.events_batch}; {self.lake_batches} new events batch(es); "
            f"late events {self.late_events or {}}; corrected {self.minutes} minute(s) and the "
            f"sessions of {self.session_users} user(s); rows written: {rows}; pending: "
            f"{self.pending_minutes} minute(s), {self.pending_sessions} session(s); "
            f"seconds {self.seconds}"
        )


Progress = Callable[[str], None]


def _quiet(step: str) -> None:
    log.debug("correction step", extra={"step": step})


class _Steps:
    """Reports each step to `progress` and times it into the report."""

    def __init__(self, progress: Progress, report: CorrectionReport) -> None:
        self.progress = progress
        self.report = report
        self.name = ""
        self.began = time.monotonic()

    def __call__(self, name: str, description: str) -> None:
        now = time.monotonic()
        if self.name:
            self.report.seconds[self.name] = round(now - self.began, 3)
        self.name, self.began = name, now
        self.progress(description)


def write_corrections(
    writer: LakeWriter,
    events_batch: int,
    windows: dict[str, pa.Table],
    sessions: pa.Table | None,
    written_at: datetime,
) -> tuple[list[str], dict[str, int]]:
    """One correction batch per data set with rows: objects, then its commit marker."""
    name = BatchName.correction(events_batch, written_at)
    tables: list[tuple[TableSpec, pa.Table]] = [
        (spec, windows[spec.name]) for spec in transforms.WINDOW_DATASETS if spec.name in windows
    ]
    if sessions is not None:
        tables.append((SESSIONS, sessions))
    markers: list[str] = []
    rows: dict[str, int] = {}
    for spec, table in tables:
        if table.num_rows == 0:
            continue
        written = writer.write_table(
            spec.name, table_for(spec, table, name.batch_id), name, spec.time_column
        )
        if written is not None:
            markers.append(commit_marker_key(spec.name, name))
            rows[spec.name] = table.num_rows
            ROWS.labels(spec.name).inc(table.num_rows)
    return markers, rows


@dataclass
class Snapshot:
    """The lake as a pass sees it: new events batches, the stateful queries' markers since
    the state's pointers, and the horizons they give."""

    batches: list[Committed]
    windows: list[Committed]
    sessions: list[Committed]
    upto: int  # the newest committed events batch
    windows_horizon: datetime | None
    sessions_horizon: datetime | None


def take_snapshot(lake: LakeIndex, state: CorrectionState) -> Snapshot:
    examined = min(state.windows_examined, state.sessions_examined)
    start = commit_marker_key(EVENTS.name, examined) if examined >= 0 else ""
    batches = lake.committed(EVENTS.name, start)
    windows = lake.committed(WINDOW_MARKERS.name, state.windows_marker)
    sessions = lake.committed(SESSIONS.name, state.sessions_marker)
    w_horizon, s_horizon = state.windows_horizon, state.sessions_horizon
    if batches:
        lake_end = batches[-1].marker
        # Horizons never go back (a pass may see fewer markers than the last one did).
        w_horizon = max(filter(None, (horizon(windows, lake_end), w_horizon)), default=None)
        s_horizon = max(filter(None, (horizon(sessions, lake_end), s_horizon)), default=None)
    upto = batches[-1].batch_id if batches else state.events_batch
    return Snapshot(batches, windows, sessions, upto, w_horizon, s_horizon)


def correct_pending(
    spark: SparkSession,
    lake: LakeIndex,
    settings: Settings,
    progress: Progress = _quiet,
    now: datetime | None = None,
) -> CorrectionReport:
    """The incremental pass: find the late events of the events batches committed since the
    last pass, and correct every window and session of them the stream has closed."""
    state = lake.load_state()
    report = CorrectionReport()
    step = _Steps(progress, report)
    step("markers", "reading commit markers")
    snap = take_snapshot(lake, state)
    batches, windows, sessions, upto = snap.batches, snap.windows, snap.sessions, snap.upto
    w_horizon, s_horizon = snap.windows_horizon, snap.sessions_horizon
    if upto < 0:
        step("", "nothing committed yet")
        return report
    report.events_batch = upto

    step("late", "finding late events")
    w_new = [b for b in batches if b.batch_id > state.windows_examined]
    s_new = [b for b in batches if b.batch_id > state.sessions_examined]
    w_cover, w_used = cover(w_new, windows)
    s_cover, s_used = cover(s_new, sessions)
    covered = [b for b in batches if b.batch_id in w_cover or b.batch_id in s_cover]
    report.lake_batches = len(covered)
    suspects = find_suspects(lake, covered, w_cover, s_cover, settings.processor_exclude_bots)
    report.late_events = {"windows": suspects.windows_late, "sessions": suspects.sessions_late}
    LATE.labels("windows").inc(suspects.windows_late)
    LATE.labels("sessions").inc(suspects.sessions_late)

    step("links", "finding the windows of newly linked visitors")
    links = lake.committed(IDENTITIES.name, state.identities_marker)
    lookback = timedelta(hours=settings.processor_correction_max_session_hours)
    relinked = linked_minutes(lake, links, upto, lookback)

    gap = interval(settings.processor_session_gap)
    minutes = set(state.pending_minutes) | suspects.minutes | relinked
    ready = ready_minutes(minutes, w_horizon)
    seeds = merge_pending([*state.pending_sessions, *suspects.sessions], gap)
    report.windows_horizon, report.sessions_horizon = w_horizon, s_horizon

    step("windows", f"recomputing {len(ready)} minute(s) of windows")
    window_tables = recompute_windows(spark, lake, ready, upto, settings)
    step("sessions", f"recomputing the sessions of {len({s.user_key for s in seeds})} user(s)")
    sessions_result = recompute_sessions(spark, lake, seeds, upto, s_horizon, settings)

    step("write", "writing correction batches")
    written_at = now or datetime.now(UTC)
    writer = LakeWriter(lake.s3, lake.bucket)
    report.markers, report.rows = write_corrections(
        writer, upto, window_tables, sessions_result.rows, written_at
    )
    report.minutes = len(ready)
    report.session_users = sessions_result.users
    report.skipped_sessions = sessions_result.skipped
    SKIPPED_SESSIONS.inc(sessions_result.skipped)

    w_examined = max(w_cover, default=state.windows_examined)
    s_examined = max(s_cover, default=state.sessions_examined)
    new_state = CorrectionState(
        events_batch=upto,
        windows_examined=w_examined,
        sessions_examined=s_examined,
        windows_marker=windows[w_used - 1].key if w_used > 0 else state.windows_marker,
        sessions_marker=sessions[s_used - 1].key if s_used > 0 else state.sessions_marker,
        windows_horizon=w_horizon,
        sessions_horizon=s_horizon,
        pending_minutes=sorted(minutes - set(ready)),
        pending_sessions=sessions_result.pending,
        identities_marker=links[-1].key if links else state.identities_marker,
        updated_at=written_at,
    )
    lake.save_state(new_state)
    report.pending_minutes = len(new_state.pending_minutes)
    report.pending_sessions = len(new_state.pending_sessions)
    PENDING.labels("minutes").set(report.pending_minutes)
    PENDING.labels("sessions").set(report.pending_sessions)
    step("", "done")
    log.info("correction pass finished", extra={"report": report.summary()})
    return report


def correct_range(
    spark: SparkSession,
    lake: LakeIndex,
    settings: Settings,
    start: datetime,
    end: datetime,
    progress: Progress = _quiet,
    now: datetime | None = None,
) -> CorrectionReport:
    """Recompute every closed window that starts in [start, end) and the sessions of every
    user with events in it, from every committed event (after a fix, or for a backfill)."""
    state = lake.load_state()
    report = CorrectionReport()
    step = _Steps(progress, report)
    step("markers", "reading commit markers")
    snap = take_snapshot(lake, state)
    upto, w_horizon, s_horizon = snap.upto, snap.windows_horizon, snap.sessions_horizon
    if upto < 0:
        step("", "nothing committed yet")
        return report
    report.events_batch = upto
    report.windows_horizon, report.sessions_horizon = w_horizon, s_horizon

    start, end = floor_minute(start.astimezone(UTC)), end.astimezone(UTC)
    minutes = []
    m = start
    while m < end:
        minutes.append(m)
        m += MINUTE
    ready = ready_minutes(minutes, w_horizon)
    report.pending_minutes = len(minutes) - len(ready)
    step("windows", f"recomputing {len(ready)} minute(s) of windows")
    window_tables = recompute_windows(spark, lake, ready, upto, settings)

    step("users", "finding the users of the range")
    # Every user with an event in the range (bots aside when they are left out).
    events = lake.read(
        lake.event_objects(hours_between(start, end), upto),
        ("event_time", "user_key", "user_agent_info_is_bot"),
        _ranges([start], end - start),
    )
    if settings.processor_exclude_bots:
        events = events.filter(pc.invert(pc.fill_null(events["user_agent_info_is_bot"], False)))
    users = events.group_by("user_key").aggregate([("event_time", "min"), ("event_time", "max")])
    seeds = [
        PendingSession(
            user_key=r["user_key"], first=utc(r["event_time_min"]), last=utc(r["event_time_max"])
        )
        for r in users.to_pylist()
    ]
    step("sessions", f"recomputing the sessions of {len(seeds)} user(s)")
    sessions_result = recompute_sessions(spark, lake, seeds, upto, s_horizon, settings)
    report.pending_sessions = len(sessions_result.pending)

    step("write", "writing correction batches")
    report.markers, report.rows = write_corrections(
        LakeWriter(lake.s3, lake.bucket),
        upto,
        window_tables,
        sessions_result.rows,
        now or datetime.now(UTC),
    )
    report.minutes = len(ready)
    report.session_users = sessions_result.users
    report.skipped_sessions = sessions_result.skipped
    step("", "done")
    log.info("range correction finished", extra={"report": report.summary()})
    return report


# --------------------------------------------------------------------------------------------
# Command line


def correction_session(settings: Settings) -> SparkSession:
    """A Spark session for the pass: the job's settings, without its streaming extras."""
    from stream_processor.spark_setup import build_session

    overrides = {"spark.app.name": "clickstream-correction", "spark.ui.enabled": "false"}
    return build_session(settings, overrides=overrides)


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _progress_bar(enabled: bool) -> tuple[Progress, Callable[[], None]]:
    if not enabled:
        return _quiet, lambda: None
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    bar = Bar(TextColumn("{task.description:<45}"), BarColumn(), TimeElapsedColumn())
    task = bar.add_task("correction", total=7)
    bar.start()

    def step(description: str) -> None:
        bar.update(task, advance=1, description=description)

    def finish() -> None:
        bar.update(task, completed=7)
        bar.stop()

    return step, finish


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stream_processor correct",
        description="Correct the final aggregates for late events (stream_processor.correction).",
    )
    parser.add_argument("--from", dest="start", type=_parse_time, help="range start (ISO time)")
    parser.add_argument("--to", dest="end", type=_parse_time, help="range end (ISO time)")
    parser.add_argument(
        "--every",
        type=float,
        nargs="?",
        const=-1.0,
        help="repeat the incremental pass every N seconds (default: "
        "PROCESSOR_CORRECTION_INTERVAL_SECONDS), serving /metrics",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if (args.start is None) != (args.end is None):
        parser.error("--from and --to go together")
    if args.start is not None and args.every is not None:
        parser.error("--every runs the incremental pass; a range runs once")

    settings = Settings()
    configure_logging("stream-processor", settings.log_level)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    lake = LakeIndex.from_settings(settings)
    if args.every is not None:
        every = settings.processor_correction_interval_seconds if args.every < 0 else args.every
        return _loop(lake, settings, every)
    step, finish = _progress_bar(not args.no_progress)
    step("starting Spark")
    spark = correction_session(settings)
    try:
        if args.start is not None:
            report = correct_range(spark, lake, settings, args.start, args.end, step)
        else:
            report = correct_pending(spark, lake, settings, step)
    finally:
        finish()
        spark.stop()
    print(report.summary())
    return 0


def _loop(lake: LakeIndex, settings: Settings, every: float) -> int:
    """The scheduled component: an incremental pass every `every` seconds until stopped.
    /metrics answers from the start; the Spark session is made once and kept."""
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    healthy = threading.Event()
    healthy.set()
    probe = ProbeServer(
        settings.processor_metrics_host,
        settings.processor_correction_metrics_port,
        ready=healthy.is_set,
    ).start()
    log.info("correction loop started", extra={"every_seconds": every})
    spark = correction_session(settings)
    try:
        while not stopping.is_set():
            begin = time.monotonic()
            try:
                with DURATION.time():
                    correct_pending(spark, lake, settings)
                RUNS.inc()
                LAST_SUCCESS.set_to_current_time()
                healthy.set()
            except Exception:
                FAILURES.inc()
                healthy.clear()
                log.exception("correction pass failed; the next one starts over")
            stopping.wait(max(0.0, every - (time.monotonic() - begin)))
    finally:
        spark.stop()
        probe.stop()
    return 0
