"""Data-quality checks of one closed hour: the warehouse against the lake and against itself.

Seven checks, each a function returning `CheckResult`s (check, subject, hour, expected,
observed, status; what expected and observed are, per check and subject, is below). The
data-quality DAG runs them for the previous closed hour, writes the results to
`analytics.dq_results` and pushes them to Prometheus, where an alert fires on any failure
(`helm/clickstream/files/prometheus/clickstream.rules.yaml`).

* `event_counts` (`events`): the lake's events of loaded batches; the warehouse's events.
* `aggregates` (each windowed data set, `sessions`): the rows an aggregation of the events
  gives; the warehouse rows equal to them.
* `duplicates` (`events`): 0; the (source, event_id) keys held more than once.
* `null_rates` (a `FIELD_RULES` entry): the highest share allowed; the share in the hour.
* `freshness` (each source seen lately): the oldest age allowed; its newest event's age (s).
* `dead_letters` (`all`): the highest share allowed; rejected / (rejected + events).
* `ledger` (each data set): markers committed more than a grace period ago (and not yet
  found in an earlier run); those in the load ledger.

Thresholds are settings (`orchestration.settings`). Pure parts (SQL text, comparisons) are
separate from the I/O so they can be tested on static data.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from clickstream_common import lake
from clickstream_common.lake import (
    HOUR,
    BatchKind,
    commit_markers_prefix,
    correction_written_at,
    floor_hour,
    parse_commit_marker_key,
)
from clickstream_common.tables import (
    ACTIVE_USERS_SPAN,
    EVENTS,
    IDENTITIES,
    SESSIONS,
    TABLES,
    WAREHOUSE_SCHEMA,
    Dialect,
    TableSpec,
    quote_identifier,
)
from orchestration import warehouse
from orchestration.lakefiles import ERRORS, ZONES, LakeObject, batch_label, marker_key_of, read_hour
from orchestration.settings import Settings
from orchestration.state import load_json, save_json

DQ_RESULTS = f"{WAREHOUSE_SCHEMA}.dq_results"
LEDGER_STATE = "dq-ledger"
EXAMPLES = 5  # mismatching keys named in a result's detail


class QualityCheckFailed(Exception):
    """A data-quality run found a discrepancy (raised after its results were recorded)."""


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    ERROR = "error"  # the check itself could not run


CHECKS = (
    "event_counts",
    "aggregates",
    "duplicates",
    "null_rates",
    "freshness",
    "dead_letters",
    "ledger",
)


@dataclass(frozen=True)
class CheckResult:
    check: str
    subject: str
    hour: datetime
    expected: float | None
    observed: float | None
    status: Status
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (Airflow passes results between tasks as XCom)."""
        return asdict(self) | {"hour": self.hour.isoformat(), "status": self.status.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(
            check=data["check"],
            subject=data["subject"],
            hour=datetime.fromisoformat(data["hour"]),
            expected=data["expected"],
            observed=data["observed"],
            status=Status(data["status"]),
            detail=data.get("detail", ""),
        )


def judged(
    check: str,
    subject: str,
    hour: datetime,
    expected: float | None,
    observed: float | None,
    ok: bool,
    detail: str = "",
) -> CheckResult:
    return CheckResult(
        check, subject, hour, expected, observed, Status.OK if ok else Status.FAILED, detail
    )


def errored(check: str, hour: datetime, error: BaseException) -> CheckResult:
    return CheckResult(check, "all", hour, None, None, Status.ERROR, repr(error)[:1000])


def hour_range(hour: datetime) -> tuple[datetime, datetime]:
    start = floor_hour(hour)
    return start, start + HOUR


# --- 1. event counts: the warehouse against the lake -------------------------------------------


def read_columns(
    s3: Any, bucket: str, objects: Sequence[LakeObject], columns: list[str]
) -> pa.Table:
    """Some columns of a few thousand small Parquet objects, read in parallel."""

    def read(obj: LakeObject) -> pa.Table:
        body = s3.get_object(Bucket=bucket, Key=obj.key)["Body"].read()
        return pq.read_table(io.BytesIO(body), columns=columns)

    if not objects:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    with ThreadPoolExecutor(max_workers=16) as pool:
        tables = list(pool.map(read, objects))
    return pa.concat_tables(tables, promote_options="permissive")


def loaded_objects(
    objects: Sequence[LakeObject], statuses: Mapping[str, str]
) -> tuple[list[LakeObject], int]:
    """The events objects whose batch the warehouse holds (compacted objects only ever hold
    such batches), and how many objects wait for the loader or are quarantined."""
    zone = ZONES[EVENTS.name]
    chosen: list[LakeObject] = []
    waiting = 0
    for obj in objects:
        label = batch_label(zone, obj.key)
        if label is None or statuses.get(marker_key_of(zone, label)) == warehouse.LOADED:
            chosen.append(obj)
        else:
            waiting += 1
    return chosen, waiting


def distinct_events(table: pa.Table) -> int:
    """Events counted the way the warehouse keys them: one per (source, event_id)."""
    if table.num_rows == 0:
        return 0
    return int(table.group_by(list(EVENTS.key)).aggregate([]).num_rows)


def lake_event_keys(
    s3: Any, bucket: str, conn: Any, hour: datetime
) -> tuple[pa.Table, list[LakeObject], int]:
    """The (source, event_id) of the hour's events of loaded batches, the objects read and
    how many were left out. Read again once if compaction switched the hour meanwhile (an
    object listed was deleted before it was read)."""
    zone = ZONES[EVENTS.name]
    for attempt in (1, 2):
        objects = read_hour(s3, bucket, zone, hour)
        labels = [batch_label(zone, o.key) for o in objects]
        statuses = warehouse.marker_statuses(conn, [marker_key_of(zone, b) for b in labels if b])
        chosen, waiting = loaded_objects(objects, statuses)
        try:
            return read_columns(s3, bucket, chosen, list(EVENTS.key)), chosen, waiting
        except ClientError as exc:
            if attempt == 2 or exc.response.get("Error", {}).get("Code") not in (
                "NoSuchKey",
                "404",
            ):
                raise
    raise AssertionError("unreachable")


def check_event_counts(s3: Any, bucket: str, conn: Any, hour: datetime) -> list[CheckResult]:
    start, end = hour_range(hour)
    keys, chosen, waiting = lake_event_keys(s3, bucket, conn, start)
    expected = distinct_events(keys)
    observed = int(
        conn.execute(
            f"SELECT COUNT(*) FROM {warehouse_table(EVENTS)} "
            "WHERE event_time >= %s AND event_time < %s",
            (start, end),
        ).fetchone()[0]
    )
    detail = f"{len(chosen)} lake objects of loaded batches, {waiting} not loaded (left out)"
    if expected != observed:
        detail += "; " + missing_events(conn, keys, start, end)
    return [
        judged("event_counts", EVENTS.name, start, expected, observed, expected == observed, detail)
    ]


def missing_events(conn: Any, lake_keys: pa.Table, start: datetime, end: datetime) -> str:
    """A few keys the lake has and the warehouse lacks, and the other way round."""
    key = ", ".join(quote_identifier(k) for k in EVENTS.key)
    rows = conn.execute(
        f"SELECT {key} FROM {warehouse_table(EVENTS)} WHERE event_time >= %s AND event_time < %s",
        (start, end),
    ).fetchall()
    held = {tuple(r) for r in rows}
    lake = set(zip(*(lake_keys[k].to_pylist() for k in EVENTS.key), strict=True))
    missing = sorted(lake - held)[:EXAMPLES]
    extra = sorted(held - lake)[:EXAMPLES]
    return f"missing from the warehouse e.g. {missing}; not in the lake e.g. {extra}"


def warehouse_table(spec: TableSpec | str) -> str:
    name = spec.name if isinstance(spec, TableSpec) else spec
    return f"{WAREHOUSE_SCHEMA}.{name}"


# --- 2. aggregates: the warehouse's windows and sessions against its events --------------------


@dataclass(frozen=True)
class Horizon:
    """What the correction pass has made final: windows ending by `windows`, sessions whose
    end plus the gap is by `sessions`, from events of batches up to `events_batch`."""

    events_batch: int | None
    windows: datetime | None
    sessions: datetime | None
    pending_minutes: frozenset[datetime] = frozenset()
    pending_users: frozenset[str] = frozenset()
    # The newest identities batch whose links the corrected windows count (None: none yet).
    identities_batch: int | None = None


def values_match(expected: Sequence[Any], observed: Sequence[Any]) -> bool:
    """Row values equal, floats to 1e-9 relative (sums add up in another order)."""
    for e, o in zip(expected, observed, strict=True):
        if isinstance(e, float) or isinstance(o, float):
            if e is None or o is None or not math.isclose(e, o, rel_tol=1e-9, abs_tol=1e-6):
                return False
        elif e != o:
            return False
    return True


def compare_rows(
    expected: Mapping[tuple[Any, ...], tuple[Any, ...]],
    observed: Mapping[tuple[Any, ...], tuple[Any, ...]],
) -> tuple[int, str]:
    """How many expected rows the warehouse holds with the same values, and a few that differ."""
    matching = 0
    wrong: list[str] = []
    for key, values in expected.items():
        held = observed.get(key)
        if held is not None and values_match(values, held):
            matching += 1
        elif len(wrong) < EXAMPLES:
            wrong.append(f"{key}: expected {values}, found {held}")
    extra = [k for k in observed if k not in expected]
    detail = ""
    if wrong:
        detail = "differ: " + "; ".join(wrong)
    if extra:
        detail += ("; " if detail else "") + f"{len(extra)} not expected, e.g. {extra[:EXAMPLES]}"
    return matching, detail


def value_columns(spec: TableSpec) -> list[str]:
    return [c for c in spec.column_names if c not in spec.key and c != "batch_id"]


def keyed(
    spec: TableSpec, rows: Iterable[Mapping[str, Any]]
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {
        tuple(_utc(r[k]) for k in spec.key): tuple(_utc(r[c]) for c in value_columns(spec))
        for r in rows
    }


def _utc(value: Any) -> Any:
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def warehouse_rows(
    conn: Any, spec: TableSpec, where: str, params: Sequence[Any]
) -> list[dict[str, Any]]:
    columns = [*spec.key, *value_columns(spec)]
    selected = ", ".join(quote_identifier(c) for c in columns)
    cursor = conn.execute(f"SELECT {selected} FROM {warehouse_table(spec)} WHERE {where}", params)
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _select_arrow(
    conn: Any,
    spec: TableSpec,
    columns: Sequence[str],
    where: str,
    params: Sequence[Any],
    in_column: str | None = None,
    in_values: Sequence[str] | None = None,
) -> pa.Table:
    """Columns of a warehouse table as one Arrow table, rows matching `where` (and
    `in_column IN in_values`, asked in slices the warehouse accepts)."""
    from clickstream_common.arrow import arrow_schema

    schema = arrow_schema(spec, columns)
    selected = ", ".join(quote_identifier(c) for c in columns)
    tables = []
    parts = warehouse.slices(list(in_values)) if in_values is not None else [None]
    for part in parts:
        clause, args = where, list(params)
        if part is not None:
            clause += f" AND {in_column} IN {warehouse.in_list(len(part))}"
            args += part
        query = f"SELECT {selected} FROM {warehouse_table(spec)} WHERE {clause}"
        rows = conn.execute(query, args).fetchall()
        arrays = [pa.array([r[i] for r in rows], field.type) for i, field in enumerate(schema)]
        tables.append(pa.table(arrays, schema=schema))
    # One chunk: PySpark 4.2's createDataFrame(pyarrow.Table) drops the rows after an empty one.
    return pa.concat_tables(tables).combine_chunks()


def warehouse_events(
    conn: Any, start: datetime, end: datetime, users: Sequence[str] | None = None
) -> pa.Table:
    """What the aggregates read of the warehouse's events, as Arrow, in [start, end)."""
    from stream_processor.correction import AGGREGATE_READ

    return _select_arrow(
        conn,
        EVENTS,
        AGGREGATE_READ,
        "event_time >= %s AND event_time < %s",
        [start, end],
        "user_key",
        users,
    )


def warehouse_links(conn: Any, user_keys: Sequence[str], upto_batch: int | None) -> pa.Table:
    """The identities rows (as the correction reads them) of these keys, from batches up to
    `upto_batch`: the links the corrected windows count a visitor once by."""
    from clickstream_common.arrow import arrow_schema
    from stream_processor.correction import IDENTITY_READ

    if upto_batch is None or not user_keys:
        return arrow_schema(IDENTITIES, IDENTITY_READ).empty_table()
    return _select_arrow(
        conn,
        IDENTITIES,
        IDENTITY_READ,
        "batch_id <= %s",
        [upto_batch],
        "anonymous_id",
        sorted(set(user_keys)),
    )


def correction_horizon(s3: Any, bucket: str) -> Horizon:
    try:
        from stream_processor.correction import LakeIndex
    except ImportError:
        return Horizon(None, None, None)
    state = LakeIndex(s3, bucket).load_state()
    if state.events_batch < 0:
        return Horizon(None, None, None)
    linked = lake.parse_commit_marker_key(state.identities_marker)
    return Horizon(
        state.events_batch,
        state.windows_horizon,
        state.sessions_horizon,
        frozenset(_utc(m) for m in state.pending_minutes),
        frozenset(p.user_key for p in state.pending_sessions),
        linked[1] if linked else None,
    )


def check_aggregates(
    spark: Any,
    s3: Any,
    bucket: str,
    conn: Any,
    hour: datetime,
    processor: Any,
) -> list[CheckResult]:
    """Every windowed row and session of the hour that the stream and the correction pass
    have made final equals the streaming job's own aggregation (run here on the warehouse's
    events, `stream_processor.transforms`) of the events they were computed from."""
    from stream_processor import identities, transforms
    from stream_processor.config import interval
    from stream_processor.correction import aggregate_ready

    start, end = hour_range(hour)
    horizon = correction_horizon(s3, bucket)
    events = warehouse_events(conn, start, end + ACTIVE_USERS_SPAN)
    if horizon.events_batch is not None:
        # The correction pass computed from events up to this batch; later ones arrived
        # after it and are the next pass's (a window closed before them never counts them).
        events = events.filter(pc.less_equal(events["batch_id"], horizon.events_batch))
    # The corrected windows count a visitor linked to a user once (docs/trackers.md).
    links = warehouse_links(
        conn, pc.unique(events["user_key"]).to_pylist(), horizon.identities_batch
    )
    frame = identities.stitched_user_key(
        aggregate_ready(spark.createDataFrame(events), processor), spark.createDataFrame(links)
    )
    rows = transforms.window_rows(transforms.window_aggregates(frame)).toArrow()
    results = []
    for spec in transforms.WINDOW_DATASETS:
        mine = rows.filter(pc.equal(rows["dataset"], spec.name)).to_pylist()
        expected = {
            k: v
            for k, v in keyed(spec, mine).items()
            if start <= k[0] < end and final_window(spec, k[0], horizon)
        }
        observed = {
            k: v
            for k, v in keyed(
                spec,
                warehouse_rows(
                    conn, spec, "window_start >= %s AND window_start < %s", (start, end)
                ),
            ).items()
            if final_window(spec, k[0], horizon)
        }
        matching, detail = compare_rows(expected, observed)
        ok = matching == len(expected) and len(observed) == len(expected)
        results.append(judged("aggregates", spec.name, start, len(expected), matching, ok, detail))

    gap = interval(processor.processor_session_gap)
    results.append(check_sessions(spark, conn, start, end, gap, horizon, processor))
    return results


def final_window(spec: TableSpec, window_start: datetime, horizon: Horizon) -> bool:
    """A window the stream has closed and no late event waits to correct."""
    length = ACTIVE_USERS_SPAN if spec.name == "active_users_5m" else timedelta(minutes=1)
    if horizon.windows is not None and window_start + length > horizon.windows:
        return False
    minutes = {window_start + k * timedelta(minutes=1) for k in range(int(length.seconds // 60))}
    return not (minutes & horizon.pending_minutes)


def check_sessions(
    spark: Any,
    conn: Any,
    start: datetime,
    end: datetime,
    gap: timedelta,
    horizon: Horizon,
    processor: Any,
) -> CheckResult:
    """Sessions that start in the hour: a session starts in it unless an event of its user
    lies less than a gap before its first one, so events from a gap before the hour on, of
    the users active in it, give every such session whole."""
    from stream_processor import transforms
    from stream_processor.correction import aggregate_ready

    if horizon.sessions is None:
        return judged("aggregates", SESSIONS.name, start, 0, 0, True, "no closed sessions yet")
    users = [
        str(r[0])
        for r in conn.execute(
            f"SELECT DISTINCT user_key FROM {warehouse_table(EVENTS)} "
            "WHERE event_time >= %s AND event_time < %s",
            (start, end),
        ).fetchall()
    ]
    until = min(
        horizon.sessions, end + timedelta(hours=processor.processor_correction_max_session_hours)
    )
    events = warehouse_events(conn, start - gap, until, users)
    if horizon.events_batch is not None:
        events = events.filter(pc.less_equal(events["batch_id"], horizon.events_batch))
    computed = (
        transforms.sessions(
            aggregate_ready(spark.createDataFrame(events), processor),
            processor.processor_session_gap,
        )
        .toArrow()
        .to_pylist()
    )

    closed_by = horizon.sessions

    def final(row: Mapping[str, Any]) -> bool:
        return (
            start <= _utc(row["session_start"]) < end
            and _utc(row["session_end"]) + gap <= closed_by
            and row["user_key"] not in horizon.pending_users
        )

    expected = keyed(SESSIONS, [r for r in computed if final(r)])
    held = warehouse_rows(
        conn, SESSIONS, "session_start >= %s AND session_start < %s", (start, end)
    )
    observed = keyed(SESSIONS, [r for r in held if final(r)])
    matching, detail = compare_rows(expected, observed)
    ok = matching == len(expected) and len(observed) == len(expected)
    return judged("aggregates", SESSIONS.name, start, len(expected), matching, ok, detail)


# --- 3. duplicates ---------------------------------------------------------------------------


def duplicates_sql() -> str:
    key = ", ".join(quote_identifier(k) for k in EVENTS.key)
    return (
        f"SELECT COUNT(*) FROM (SELECT {key} FROM {warehouse_table(EVENTS)} "
        f"WHERE event_time >= %s AND event_time < %s GROUP BY {key} HAVING COUNT(*) > 1) AS d"
    )


def check_duplicates(conn: Any, hour: datetime) -> list[CheckResult]:
    """No event held twice. PostgreSQL's primary key already prevents it; Redshift does not
    enforce keys, so there the loader's merge is all that does."""
    start, end = hour_range(hour)
    observed = int(conn.execute(duplicates_sql(), (start, end)).fetchone()[0])
    return [judged("duplicates", EVENTS.name, start, 0, observed, observed == 0)]


# --- 4. null or invalid values per field -----------------------------------------------------


@dataclass(frozen=True)
class FieldRule:
    """`column` is NULL (absent, or dropped by the processor as invalid: a currency that is
    not three letters, a number of the wrong type) in at most `max_rate` of the events of
    `event_types` (all when empty); `threshold` names the setting that holds the rate."""

    name: str
    column: str
    event_types: tuple[str, ...] = ()
    threshold: str = "dq_null_rate_max"
    missing: str = "IS NULL"  # what makes the value count


FIELD_RULES: tuple[FieldRule, ...] = (
    FieldRule("page_url of page views", "page_url", ("page_view",)),
    FieldRule("product_id of product events", "product_id", ("product_view", "add_to_cart")),
    FieldRule("price of product events", "price", ("product_view", "add_to_cart")),
    FieldRule("revenue of purchases", "revenue", ("purchase",)),
    FieldRule("order_id of purchases", "property_order_id", ("purchase",)),
    FieldRule(
        "currency of priced events",
        "currency",
        ("product_view", "add_to_cart", "checkout", "purchase"),
    ),
    FieldRule(
        "event_time replaced by the clock policy",
        "event_time_adjusted",
        threshold="dq_adjusted_time_rate_max",
        missing="IS NOT NULL",
    ),
)

for _rule in FIELD_RULES:  # the rules name columns of the events table, nothing else
    EVENTS.column(_rule.column)


def null_rates_sql(rules: Sequence[FieldRule]) -> str:
    """One pass over the hour's events: per rule, the events it covers and those missing the
    value. CASE sums rather than FILTER: Redshift has no FILTER clause."""
    parts = []
    for rule in rules:
        covered = (
            "event_type IN (" + ", ".join(f"'{t}'" for t in rule.event_types) + ")"
            if rule.event_types
            else "TRUE"
        )
        column = quote_identifier(rule.column)
        parts.append(f"SUM(CASE WHEN {covered} THEN 1 ELSE 0 END)")
        parts.append(f"SUM(CASE WHEN {covered} AND {column} {rule.missing} THEN 1 ELSE 0 END)")
    return (
        f"SELECT {', '.join(parts)} FROM {warehouse_table(EVENTS)} "
        "WHERE event_time >= %s AND event_time < %s"
    )


def judge_null_rates(
    rules: Sequence[FieldRule], counts: Sequence[Any], settings: Settings, hour: datetime
) -> list[CheckResult]:
    results = []
    for i, rule in enumerate(rules):
        covered, missing = int(counts[2 * i] or 0), int(counts[2 * i + 1] or 0)
        limit = float(getattr(settings, rule.threshold))
        rate = missing / covered if covered else 0.0
        detail = f"{missing} of {covered} events"
        results.append(judged("null_rates", rule.name, hour, limit, rate, rate <= limit, detail))
    return results


def check_null_rates(conn: Any, hour: datetime, settings: Settings) -> list[CheckResult]:
    start, end = hour_range(hour)
    counts = conn.execute(null_rates_sql(FIELD_RULES), (start, end)).fetchone()
    return judge_null_rates(FIELD_RULES, counts, settings, start)


# --- 5. freshness ----------------------------------------------------------------------------


def check_freshness(
    conn: Any, hour: datetime, settings: Settings, now: datetime
) -> list[CheckResult]:
    """The newest event of every source seen in the lookback is recent, measured when the
    check runs (it is about the pipeline now, whatever hour the run is for)."""
    since = now - timedelta(hours=settings.dq_freshness_lookback_hours)
    rows = conn.execute(
        f"SELECT source, MAX(received_at) FROM {warehouse_table(EVENTS)} "
        "WHERE event_time >= %s GROUP BY source ORDER BY source",
        (since,),
    ).fetchall()
    limit = settings.dq_freshness_max_seconds
    start, _ = hour_range(hour)
    if not rows:
        detail = f"no events in the last {settings.dq_freshness_lookback_hours:g} hours"
        return [judged("freshness", "all", start, limit, None, False, detail)]
    results = []
    for source, newest in rows:
        age = max(0.0, (now - _utc(newest)).total_seconds())
        detail = f"newest event received {_utc(newest).isoformat()}"
        results.append(judged("freshness", str(source), start, limit, age, age <= limit, detail))
    return results


# --- 6. dead letters -------------------------------------------------------------------------


async def _topic_count(settings: Settings, topic: str, start: datetime, end: datetime) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from clickstream_common.kafka_security import aiokafka_options

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        **aiokafka_options(settings),
    )
    await consumer.start()
    try:
        await consumer.topics()  # metadata
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return 0
        ends = await consumer.end_offsets(tps)

        async def at(when: datetime) -> dict[Any, int]:
            found = await consumer.offsets_for_times(
                {tp: int(when.timestamp() * 1000) for tp in tps}
            )
            return {tp: (found[tp].offset if found.get(tp) else ends[tp]) for tp in tps}

        first, last = await at(start), await at(end)
        return sum(last[tp] - first[tp] for tp in tps)
    finally:
        await consumer.stop()


def dead_letter_records(settings: Settings, start: datetime, end: datetime) -> int:
    """Events the collector rejected in the hour (its dead-letter topic, by Kafka time)."""
    if settings.dq_dead_letter_source == "none":
        return 0
    return asyncio.run(_topic_count(settings, settings.kafka_dead_letter_topic, start, end))


def error_records(s3: Any, bucket: str, hour: datetime) -> int:
    """Records the processor rejected in the hour (errors/, one JSON line each)."""
    total = 0
    for obj in read_hour(s3, bucket, ERRORS, hour):
        body = s3.get_object(Bucket=bucket, Key=obj.key)["Body"].read()
        total += gzip.decompress(body).count(b"\n")
    return total


def check_dead_letters(
    s3: Any, bucket: str, conn: Any, hour: datetime, settings: Settings
) -> list[CheckResult]:
    start, end = hour_range(hour)
    collector = dead_letter_records(settings, start, end)
    processor = error_records(s3, bucket, start)
    events = int(
        conn.execute(
            f"SELECT COUNT(*) FROM {warehouse_table(EVENTS)} "
            "WHERE event_time >= %s AND event_time < %s",
            (start, end),
        ).fetchone()[0]
    )
    rejected = collector + processor
    rate = rejected / (rejected + events) if rejected + events else 0.0
    limit = settings.dq_dead_letter_rate_max
    detail = f"{collector} refused by the collector, {processor} by the processor, {events} events"
    return [judged("dead_letters", "all", start, limit, rate, rate <= limit, detail)]


# --- 7. every committed batch in the load ledger ------------------------------------------------


@dataclass(frozen=True)
class ListedMarker:
    key: str
    etag: str
    written: datetime


def list_markers(
    s3: Any, bucket: str, dataset: str, kind: BatchKind, start_after: str
) -> list[ListedMarker]:
    """One kind of commit marker of a data set after a key, with when each was written (a
    correction's name says it; a stream marker's object time does)."""
    found = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=commit_markers_prefix(dataset, kind), StartAfter=start_after
    )
    for page in pages:
        for item in page.get("Contents", []):
            if parse_commit_marker_key(item["Key"]) is None:
                continue
            written = correction_written_at(item["Key"]) or item["LastModified"]
            etag = str(item.get("ETag") or "").strip().strip('"')
            found.append(ListedMarker(item["Key"], etag, written.astimezone(UTC)))
    found.sort(key=lambda m: m.key)
    return found


def check_ledger(
    s3: Any, bucket: str, conn: Any, hour: datetime, settings: Settings, now: datetime
) -> list[CheckResult]:
    """Every commit marker written more than the grace period ago is in the load ledger,
    measured when the check runs (a lost batch is reported in the next run, whatever hour
    its rows belong to). Markers list in write order per data set and kind; the check keeps, per
    data set and kind, the key up to which every marker was found, and lists only past it
    (corrections from an hour before it, as the loader's sweep does: they may land a little
    out of name order)."""
    from warehouse_loader.reconcile import advance, list_start

    start, _ = hour_range(hour)
    cutoff = now - timedelta(seconds=settings.dq_ledger_grace_seconds)
    state = load_json(s3, bucket, LEDGER_STATE)
    watermarks: dict[str, str] = state.get("watermarks", {})
    results = []
    for dataset in TABLES:
        due = 0
        missing: list[str] = []
        for kind in BatchKind:
            slot = f"{dataset}/{kind.value}"
            watermark = watermarks.get(slot, "")
            listed = list_markers(s3, bucket, dataset, kind, list_start(dataset, kind, watermark))
            recorded = warehouse.recorded_versions(conn, [m.key for m in listed])
            for marker in listed:
                if marker.written < cutoff:
                    due += 1
                    if (marker.key, marker.etag) not in recorded:
                        missing.append(marker.key)
            plain = [lake.ListedMarker(m.key, m.etag) for m in listed]
            watermarks[slot] = advance(watermark, plain, recorded)
        detail = f"missing e.g. {missing[:EXAMPLES]}" if missing else ""
        results.append(
            judged("ledger", dataset, start, due, due - len(missing), not missing, detail)
        )
    save_json(s3, bucket, LEDGER_STATE, {"watermarks": watermarks, "updated_at": now.isoformat()})
    return results


# --- results ------------------------------------------------------------------------------------


def dq_results_ddl(dialect: Dialect) -> list[str]:
    """The results table and a view of the newest result per check, subject and hour.

    Owned by the data-quality job (the only writer), created idempotently by its first task;
    one row per check, subject, hour and run, so a re-run keeps the history."""
    text = "TEXT" if dialect is Dialect.POSTGRES else "VARCHAR(1024)"
    long_text = "TEXT" if dialect is Dialect.POSTGRES else "VARCHAR(4096)"
    suffix = "\nDISTSTYLE ALL\nSORTKEY (hour)" if dialect is Dialect.REDSHIFT else ""
    table = f"""CREATE TABLE IF NOT EXISTS {DQ_RESULTS} (
    check_name {text} NOT NULL,
    subject {text} NOT NULL,
    hour TIMESTAMPTZ NOT NULL,
    expected DOUBLE PRECISION,
    observed DOUBLE PRECISION,
    status {text} NOT NULL,
    detail {long_text},
    checked_at TIMESTAMPTZ NOT NULL,
    run_id {text},
    PRIMARY KEY (check_name, subject, hour, checked_at)
){suffix}"""
    latest = f"""CREATE OR REPLACE VIEW {WAREHOUSE_SCHEMA}.dq_latest AS
SELECT check_name, subject, hour, expected, observed, status, detail, checked_at, run_id
FROM (
    SELECT r.*, ROW_NUMBER() OVER (
        PARTITION BY check_name, subject, hour ORDER BY checked_at DESC) AS newest
    FROM {DQ_RESULTS} AS r) AS ranked
WHERE newest = 1"""
    return [f"CREATE SCHEMA IF NOT EXISTS {WAREHOUSE_SCHEMA}", table, latest]


def insert_results_sql() -> str:
    return (
        f"INSERT INTO {DQ_RESULTS} (check_name, subject, hour, expected, observed, status, "
        "detail, checked_at, run_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )


def record_results(
    conn: Any, results: Sequence[CheckResult], checked_at: datetime, run_id: str
) -> None:
    rows = [
        (
            r.check,
            r.subject[:1024],
            r.hour,
            r.expected,
            r.observed,
            r.status.value,
            r.detail[:4096],
            checked_at,
            run_id,
        )
        for r in results
    ]
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany(insert_results_sql(), rows)
