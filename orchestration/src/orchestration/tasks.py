"""What each Airflow task runs: settings, clients and sessions around the plain functions.

The DAG files (`orchestration/dags/`) only wire these into tasks; every function here takes
plain arguments plus the Airflow context values it names (`logical_date`, `params`,
`run_id`, `ti`), returns JSON-ready values (XCom), and can be called without Airflow.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

from clickstream_common.lake import HOUR, floor_hour
from orchestration import metrics, quality
from orchestration.settings import Settings

log = logging.getLogger(__name__)

LOAD_TIMEOUT_SECONDS = 900.0


def parse_time(value: str | datetime) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def checked_hour(logical_date: datetime | None, params: Mapping[str, Any] | None) -> datetime:
    """The hour a data-quality run checks: `params.hour` if given, else the hour before the
    one the run is scheduled in (the previous closed hour)."""
    if params and params.get("hour"):
        return floor_hour(parse_time(params["hour"]))
    return floor_hour(logical_date or datetime.now(UTC)) - HOUR


def compacted_day(logical_date: datetime | None, params: Mapping[str, Any] | None) -> date:
    """The day a compaction run compacts: `params.day`, else the day before the run's."""
    if params and params.get("day"):
        return date.fromisoformat(str(params["day"]))
    return ((logical_date or datetime.now(UTC)).astimezone(UTC) - timedelta(days=1)).date()


@contextmanager
def spark_session(app: str) -> Iterator[tuple[Any, Any]]:
    """A Spark session with the processor's settings (PROCESSOR_*: the same definitions as
    the streaming job), stopped at the end."""
    import logging as _logging

    from stream_processor.config import Settings as ProcessorSettings
    from stream_processor.spark_setup import build_session

    processor = ProcessorSettings()
    _logging.getLogger("py4j").setLevel(_logging.WARNING)
    spark = build_session(
        processor, overrides={"spark.app.name": f"clickstream-{app}", "spark.ui.enabled": "false"}
    )
    try:
        yield spark, processor
    finally:
        spark.stop()


# --- hourly correction -----------------------------------------------------------------------


def correct() -> dict[str, Any]:
    """The late-data correction pass (`stream_processor.correction.correct_pending`) over the
    events batches committed since its last run: every closed window and session that
    received a late event is recomputed and written as a correction batch."""
    from stream_processor.correction import LakeIndex, correct_pending

    with spark_session("correction") as (spark, processor):
        lake = LakeIndex.from_settings(processor)
        report = correct_pending(
            spark, lake, processor, progress=lambda step: log.info("correction: %s", step)
        )
    log.info("correction pass finished", extra={"summary": report.summary()})
    return {
        "markers": report.markers,
        "rows": report.rows,
        "late_events": report.late_events,
        "minutes_corrected": report.minutes,
        "session_users_corrected": report.session_users,
        "pending_minutes": report.pending_minutes,
        "pending_sessions": report.pending_sessions,
        "events_batch": report.events_batch,
    }


def pulled(ti: Any, task_id: str) -> Any:
    """What an upstream task returned (None if it returned nothing or failed)."""
    return ti.xcom_pull(task_ids=task_id) if ti is not None else None


def wait_loaded(upstream: str, ti: Any = None, timeout: float = LOAD_TIMEOUT_SECONDS) -> int:
    """Done when the warehouse holds every marker the upstream task wrote (the loader
    loads them; the markers stay in the lake if it does not in time)."""
    from orchestration.loading import wait_until_loaded
    from orchestration.warehouse import connect

    markers = (pulled(ti, upstream) or {}).get("markers") or []
    if not markers:
        return 0
    with connect(Settings()) as conn:
        wait_until_loaded(conn, list(markers), timeout)
    log.info("loaded", extra={"markers": len(markers)})
    return len(markers)


# --- data quality ----------------------------------------------------------------------------


def dq_prepare() -> None:
    """The results table (idempotent DDL; the job owns the table)."""
    from orchestration.warehouse import connect

    settings = Settings()
    with connect(settings) as conn:
        for statement in quality.dq_results_ddl(settings.warehouse_dialect):
            conn.execute(statement)


def dq_check(
    check: str, logical_date: datetime | None = None, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """One data-quality check of the checked hour; its results as dicts (XCom)."""
    from orchestration.warehouse import connect

    settings = Settings()
    hour = checked_hour(logical_date, params)
    now = datetime.now(UTC)
    s3 = settings.s3_client()
    bucket = settings.s3_bucket
    with connect(settings) as conn:
        if check == "event_counts":
            results = quality.check_event_counts(s3, bucket, conn, hour)
        elif check == "aggregates":
            with spark_session("data-quality") as (spark, processor):
                results = quality.check_aggregates(spark, s3, bucket, conn, hour, processor)
        elif check == "duplicates":
            results = quality.check_duplicates(conn, hour)
        elif check == "null_rates":
            results = quality.check_null_rates(conn, hour, settings)
        elif check == "freshness":
            results = quality.check_freshness(conn, hour, settings, now)
        elif check == "dead_letters":
            results = quality.check_dead_letters(s3, bucket, conn, hour, settings)
        elif check == "ledger":
            results = quality.check_ledger(s3, bucket, conn, hour, settings, now)
        else:
            raise ValueError(f"unknown check {check!r}; known: {', '.join(quality.CHECKS)}")
    for r in results:
        log.info(
            "data-quality result",
            extra={"check": r.check, "subject": r.subject, "status": r.status.value},
        )
    return [r.as_dict() for r in results]


def dq_collect(
    gathered: Mapping[str, Sequence[Mapping[str, Any]] | None], hour: datetime
) -> list[quality.CheckResult]:
    """Every check's results; a check whose task produced none (it failed) counts as an
    error, so a broken check is never read as a passing one."""
    results: list[quality.CheckResult] = []
    for check in quality.CHECKS:
        found = gathered.get(check)
        if not found:
            results.append(quality.errored(check, hour, RuntimeError("the check's task failed")))
            continue
        results += [quality.CheckResult.from_dict(r) for r in found]
    return results


def dq_record(
    ti: Any = None,
    logical_date: datetime | None = None,
    params: Mapping[str, Any] | None = None,
    run_id: str = "",
    gathered: Mapping[str, Sequence[Mapping[str, Any]] | None] | None = None,
) -> dict[str, Any]:
    """Write every check task's results to `analytics.dq_results` and push them to
    Prometheus (runs whatever the checks' outcome)."""
    from orchestration.warehouse import connect

    settings = Settings()
    hour = checked_hour(logical_date, params)
    if gathered is None:
        gathered = {check: pulled(ti, f"check_{check}") for check in quality.CHECKS}
    results = dq_collect(gathered, hour)
    now = datetime.now(UTC)
    with connect(settings) as conn:
        quality.record_results(conn, results, now, run_id)
    pushed = metrics.push(
        settings, metrics.DATA_QUALITY_JOB, metrics.quality_samples(results, hour, now)
    )
    failed = [f"{r.check}/{r.subject}: {r.status.value}" for r in results if r.status != "ok"]
    return {"hour": hour.isoformat(), "results": len(results), "failed": failed, "pushed": pushed}


def dq_verdict(ti: Any = None, summary: Mapping[str, Any] | None = None) -> None:
    """Fail the run when a check failed (after the results were recorded and pushed)."""
    summary = summary if summary is not None else pulled(ti, "record")
    if summary is None:
        raise RuntimeError("the results were not recorded")
    if summary["failed"]:
        raise quality.QualityCheckFailed(
            f"{len(summary['failed'])} data-quality result(s) failed for {summary['hour']}: "
            + "; ".join(summary["failed"][:10])
        )


# --- compaction ------------------------------------------------------------------------------


def compact(
    zone: str, logical_date: datetime | None = None, params: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Compact one zone's hours of the compacted day and the lookback before it."""
    from orchestration.compaction import compact_zone, hours_of
    from orchestration.lakefiles import ZONES
    from orchestration.warehouse import connect

    settings = Settings()
    day = compacted_day(logical_date, params)
    now = datetime.now(UTC)
    lookback = int((params or {}).get("lookback_days") or settings.compaction_lookback_days)
    hours = hours_of(day, lookback, now)
    s3 = settings.s3_client()
    target = ZONES[zone]
    if target.processed:
        with connect(settings) as conn:
            report = compact_zone(s3, settings.s3_bucket, target, hours, settings, conn, now)
    else:
        report = compact_zone(s3, settings.s3_bucket, target, hours, settings, None, now)
    summary = report.summary()
    log.info("zone compacted", extra=summary)
    return summary


def compaction_report(
    ti: Any = None, summaries: Sequence[Mapping[str, Any] | None] | None = None
) -> dict[str, Any]:
    """Objects and bytes before and after, per zone, pushed to Prometheus; fails the run if
    a zone failed (after pushing what the others did)."""
    from orchestration.lakefiles import ZONES

    settings = Settings()
    if summaries is None:
        summaries = [pulled(ti, f"compact_{zone}") for zone in ZONES]
    done = [s for s in summaries if s]
    samples = []
    for s in done:
        for stage in ("before", "after"):
            labels = (("zone", str(s["zone"])), ("stage", stage))
            samples.append(
                metrics.Sample(
                    "clickstream_compaction_objects",
                    "Live objects of the compacted hours, before and after the last run",
                    float(s[f"objects_{stage}"]),
                    labels,
                )
            )
            samples.append(
                metrics.Sample(
                    "clickstream_compaction_bytes",
                    "Bytes of the compacted hours' live objects, before and after the last run",
                    float(s[f"bytes_{stage}"]),
                    labels,
                )
            )
    samples.append(
        metrics.Sample(
            "clickstream_compaction_last_run_timestamp_seconds",
            "When the last compaction run finished",
            datetime.now(UTC).timestamp(),
        )
    )
    metrics.push(settings, metrics.COMPACTION_JOB, samples)
    totals = {
        "zones": len(done),
        "objects_before": sum(int(s["objects_before"]) for s in done),
        "objects_after": sum(int(s["objects_after"]) for s in done),
    }
    if len(done) < len(summaries):
        raise RuntimeError(f"{len(summaries) - len(done)} zone(s) failed to compact: {totals}")
    return totals


# --- backfill ---------------------------------------------------------------------------------


def backfill(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Rebuild `params.datasets` for [`params.start`, `params.end`) from the raw zone."""
    from orchestration import backfill as rebuild
    from stream_processor.config import interval

    params = params or {}
    if not params.get("start") or not params.get("end"):
        raise ValueError("a backfill needs params start and end (ISO times)")
    settings = Settings()
    datasets = params.get("datasets") or list(rebuild.DATASETS)
    s3 = settings.s3_client()
    with spark_session("backfill") as (spark, processor):
        plan = rebuild.plan(
            parse_time(params["start"]),
            parse_time(params["end"]),
            datasets,
            interval(processor.processor_session_gap),
            settings,
            datetime.now(UTC),
        )
        report = rebuild.backfill(spark, s3, settings.s3_bucket, plan, processor)
    return report.as_dict()


# --- catch-up load ------------------------------------------------------------------------------


def catch_up(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    from orchestration.catchup import catch_up as sweep

    full = bool((params or {}).get("full"))
    loaded = sweep(full=full)
    metrics.push(
        Settings(),
        metrics.CATCHUP_JOB,
        [
            metrics.Sample(
                "clickstream_catchup_loaded_batches",
                "Committed batches the last catch-up load found missing and loaded",
                float(loaded),
            ),
            metrics.Sample(
                "clickstream_catchup_last_run_timestamp_seconds",
                "When the last catch-up load finished",
                datetime.now(UTC).timestamp(),
            ),
        ],
    )
    return {"loaded": loaded, "full": full}
