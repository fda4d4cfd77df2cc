"""The five DAGs on the real local stack, run with Airflow's `dag.test()` (no scheduler).

One scratch stack (Kafka, S3, PostgreSQL, Prometheus, the pushgateway, the streaming job and
the loader) carries the scenario, and each test runs one DAG (`python -m orchestration run`
in Airflow's own venv, as a deployment's worker would run it) and checks what it changed:

1. hourly correction: events that arrived late reach the final aggregates;
2. catch-up load: batches committed while the loader was down reach the warehouse;
3. compaction: an hour's objects become a few, and every reader (the Hive-style listing the
   Glue tables use, the raw zone, the loader) sees the same data as before;
4. data quality: every check passes on the compacted lake, results in `dq_results` and in
   Prometheus; a row deleted from the warehouse fails the checks and fires the alert;
5. backfill: aggregates deleted from the warehouse come back from the raw zone equal to
   what streaming produced.

The traffic is in the previous hour (the one the hourly DAGs look at), sent straight to
Kafka; the expected figures are computed independently in plain Python
(`tests/processor/streamdata.py`).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pyarrow.parquet as pq
import pytest

from clickstream_common.lake import CORRECTION_BATCH_BASE
from clickstream_common.tables import ACTIVE_USERS_SPAN, TABLES, MergeMode
from clickstream_local.orchestration import airflow_dir, run_dag
from tests.conftest import RunningStack, _new_stack, _stop, wait_for
from tests.late.test_late_events import GAP, PROCESSOR_ENV, ticking
from tests.processor.streamdata import (
    Lake,
    Sender,
    diff,
    enrich,
    expected_sessions,
    expected_windows,
    shopper_events,
    simple_event,
    user_key,
)
from tests.warehouse import in_period, warehouse_sessions, warehouse_windows

pytestmark = [pytest.mark.platform, pytest.mark.spark]

# The seven checks issue #15 lists.
ISSUE_CHECKS = (
    "event_counts",
    "aggregates",
    "duplicates",
    "null_rates",
    "freshness",
    "dead_letters",
    "ledger",
)
# The DAGs' settings for this scenario's pace: objects may be compacted as soon as they are
# loaded (the default waits an hour), committed batches are judged after 30 s, and a source
# counts as fresh for an hour (the scenario's last events are minutes old by then).
ORCHESTRATION_ENV = PROCESSOR_ENV | {
    "COMPACTION_MIN_AGE_SECONDS": "0",
    "DQ_LEDGER_GRACE_SECONDS": "30",
    "DQ_FRESHNESS_MAX_SECONDS": "3600",
}


def airflow_ready() -> bool:
    return (airflow_dir() / "venv" / "bin" / "python").is_file()


@dataclass
class Scenario:
    stack: RunningStack
    hour: datetime
    on_time: list[dict[str, Any]]
    late: list[dict[str, Any]]
    live_from: datetime  # from then on, events stamped now (the ticks, later tests' events)

    @property
    def dsn(self) -> str:
        return self.stack.info.warehouse_dsn

    @property
    def period(self) -> tuple[datetime, datetime]:
        return self.hour, self.hour + timedelta(hours=1)

    @property
    def compared(self) -> tuple[datetime, datetime]:
        """The windows of the period that only the scenario's events can reach. Run within 5
        minutes after the hour, the events stamped now also count in the period's last
        active-users windows (which reach into the next hour); those are left out."""
        return self.hour, min(self.hour + timedelta(hours=1), self.live_from - ACTIVE_USERS_SPAN)

    def run(self, dag_id: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        """One DAG run; its summary (`RESULT` line of `python -m orchestration run`)."""
        done = run_dag(self.stack.stack.config, dag_id, conf, capture=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if not lines:
            raise AssertionError(
                f"{dag_id}: no result\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
            )
        summary: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
        summary["returncode"] = done.returncode
        summary["log"] = done.stdout[-20000:] + done.stderr[-20000:]
        return summary


def succeeded(summary: dict[str, Any]) -> None:
    assert summary["state"] == "success" and summary["returncode"] == 0, summary["log"][-6000:]


@pytest.fixture(scope="module")
def scenario() -> Iterator[Scenario]:
    if not airflow_ready():
        pytest.fail(f"no Airflow venv in {airflow_dir()} (run local/bootstrap.sh)")
    stack, state = _new_stack(
        ("stream-processor", "warehouse-loader"),
        env={"stream-processor": PROCESSOR_ENV, "orchestration": ORCHESTRATION_ENV},
    )
    try:
        info = stack.connection_info()
        running = RunningStack(stack, info)
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        on_time = shopper_events(
            seed=1501, start=hour + timedelta(minutes=10), minutes=20, count=600
        )
        sender = Sender(info.kafka_bootstrap)
        sender.send(on_time)
        live_from = datetime.now(UTC)
        with ticking(info.kafka_bootstrap):
            # The stream closes the hour's windows once the live ticks move its watermark on.
            def stream_final() -> bool:
                got = warehouse_windows(info.warehouse_dsn, hour, hour + timedelta(hours=1))
                want = in_period(expected_windows(on_time), hour, hour + timedelta(hours=1))
                closed = windows_watermark(Lake(info))
                return (
                    got["event_counts_minute"] == want["event_counts_minute"]
                    and closed is not None
                    and closed > hour + timedelta(hours=1)
                )

            wait_for(stream_final, 420, interval=3, what="the stream to close the hour")
            # Then events of the hour that arrive now, long after its windows closed.
            received = datetime.now(UTC)
            late = [
                enrich(e | {"event_id": f"late-{i}"}, received, timedelta(0))
                for i, e in enumerate(
                    shopper_events(
                        seed=1502, start=hour + timedelta(minutes=15), minutes=5, count=150
                    )
                )
            ]
            sender.send(late)
            wait_for(
                lambda: events_in_warehouse(info.warehouse_dsn, [e["event_id"] for e in late]),
                300,
                interval=3,
                what="the late events in analytics.events",
            )
        yield Scenario(running, hour, on_time, late, live_from)
    finally:
        _stop(stack, state)


def windows_watermark(lake: Lake) -> datetime | None:
    """The watermark of the stream's newest windows batch (its commit marker records it)."""
    keys = sorted(k for k in lake.keys("processed/active_users_5m/_commits/batch-"))
    if not keys:
        return None
    watermark = json.loads(lake.get(keys[-1])).get("watermark")
    return datetime.fromisoformat(watermark) if watermark else None


def events_in_warehouse(dsn: str, ids: list[str]) -> bool:
    with psycopg.connect(dsn) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM analytics.events WHERE event_id = ANY(%s)", (ids,)
        ).fetchone()
    return int(count) == len(set(ids))


def test_the_dag_bag_imports_without_errors_or_cycles() -> None:
    if not airflow_ready():
        pytest.fail(f"no Airflow venv in {airflow_dir()} (run local/bootstrap.sh)")
    python = airflow_dir() / "venv" / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["AIRFLOW_HOME"] = str(airflow_dir() / "home")
    done = subprocess.run(
        [str(python), "-m", "orchestration", "dags"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    bag = json.loads(lines[-1].removeprefix("RESULT "))
    assert bag["import_errors"] == {} and bag["cycles"] == {}
    dags = bag["dags"]
    assert set(dags) == {
        "clickstream_hourly_correction",
        "clickstream_data_quality",
        "clickstream_lake_compaction",
        "clickstream_backfill",
        "clickstream_catchup_load",
    }
    assert dags["clickstream_hourly_correction"]["schedule"] == "5 * * * *"
    assert dags["clickstream_data_quality"]["tasks"] == sorted(
        ["prepare", "record", "verdict", *(f"check_{c}" for c in ISSUE_CHECKS)]
    )
    assert len(dags["clickstream_lake_compaction"]["tasks"]) == len(TABLES) + 3
    assert dags["clickstream_backfill"]["schedule"] is None


def test_hourly_correction_brings_late_events_into_the_final_aggregates(scenario: Scenario) -> None:
    everything = scenario.on_time + scenario.late
    want = in_period(expected_windows(everything), *scenario.compared)
    assert want != in_period(expected_windows(scenario.on_time), *scenario.compared)
    assert warehouse_windows(scenario.dsn, *scenario.compared) != want  # the stream dropped them

    summary = scenario.run("clickstream_hourly_correction")
    succeeded(summary)
    assert summary["tasks"] == {"correct": "success", "loaded": "success"}
    got = warehouse_windows(scenario.dsn, *scenario.compared)
    assert got == want, {table: diff(want[table], got[table]) for table in want}
    users = {user_key(e) for e in everything}
    sessions = {k: v for k, v in expected_sessions(everything, GAP).items() if v[0] in users}
    assert warehouse_sessions(scenario.dsn, users) == sessions


def ledger_keys(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT object_key FROM analytics.load_ledger")}


def marker_keys(lake: Lake) -> set[str]:
    return {k for k in lake.keys("processed/") if "/_commits/" in k}


def test_catchup_load_loads_what_the_loader_missed(scenario: Scenario) -> None:
    stack = scenario.stack
    lake = Lake(stack.info)
    stack.stack.components["warehouse-loader"].stop()
    try:
        ids = [f"catchup-{uuid.uuid4().hex}" for _ in range(20)]
        now = datetime.now(UTC)
        Sender(stack.info.kafka_bootstrap).send(
            [simple_event(i, f"catchup-user-{n % 4}", now) for n, i in enumerate(ids)]
        )
        wait_for(
            lambda: set(ids) <= {r["event_id"] for r in lake.final("events").values()},
            300,
            interval=3,
            what="the processor to commit the new events",
        )
        missing = marker_keys(lake) - ledger_keys(scenario.dsn)
        assert missing, "the loader is down: some committed batches must be missing"
        assert not events_in_warehouse(scenario.dsn, ids)

        summary = scenario.run("clickstream_catchup_load")
        succeeded(summary)
        assert missing <= ledger_keys(scenario.dsn)
        assert events_in_warehouse(scenario.dsn, ids)
        loaded = json.loads(lake.get("orchestration/state/catchup.json"))
        # A sweep position per data set that has committed stream batches (the anomaly
        # detector writes only when it finds one).
        committed = {k.split("/")[1] for k in marker_keys(lake) if "/_commits/batch-" in k}
        assert committed >= {"events", "sessions"}
        assert set(loaded["watermarks"]) >= {f"{t}/batch" for t in committed}
    finally:
        stack.stack.components["warehouse-loader"].launch()
        stack.stack.components["warehouse-loader"].wait_ready()


def hive_reading(lake: Lake, dataset: str, hour: datetime) -> dict[tuple[Any, ...], Any]:
    """What a Hive-style reader (the Glue tables: every visible object of the partition
    folder) makes of an hour: the `<name>_current` view's rows, one per key."""
    spec = TABLES[dataset]
    prefix = f"processed/{dataset}/date={hour:%Y-%m-%d}/hour={hour:%H}/"
    rows = []
    for key in lake.keys(prefix):
        if key.endswith(".parquet") and not key.rsplit("/", 1)[-1].startswith(("_", ".")):
            rows += pq.read_table(io.BytesIO(lake.get(key))).to_pylist()
    newest_first = spec.merge is MergeMode.UPSERT_LATEST
    rows.sort(key=lambda r: r["batch_id"], reverse=newest_first)
    current: dict[tuple[Any, ...], Any] = {}
    for row in rows:
        current.setdefault(tuple(row[k] for k in spec.key), row)
    return current


def loader_skipped(stack: RunningStack) -> float:
    port = stack.stack.config.loader_metrics_port
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("loader_notifications_skipped_total{")
    )


def test_compaction_rewrites_an_hour_into_few_objects_for_every_reader(scenario: Scenario) -> None:
    lake = Lake(scenario.stack.info)
    hour = scenario.hour
    now = datetime.now(UTC)
    before = {d: hive_reading(lake, d, hour) for d in TABLES}
    raw_before = lake.raw_records()
    ledger_before = ledger_keys(scenario.dsn)
    events_prefix = f"processed/events/date={hour:%Y-%m-%d}/hour={hour:%H}/"
    objects_before = len([k for k in lake.keys(events_prefix) if k.endswith(".parquet")])
    skipped_before = loader_skipped(scenario.stack)

    summary = scenario.run(
        "clickstream_lake_compaction", {"day": now.date().isoformat(), "lookback_days": 2}
    )
    succeeded(summary)
    objects_after = [k for k in lake.keys(events_prefix) if k.endswith(".parquet")]
    print(f"events objects of {hour:%H}:00: {objects_before} before, {len(objects_after)} after")
    assert objects_before > 1
    assert len(objects_after) < objects_before
    assert any("-compacted-" in k for k in objects_after)
    manifest = json.loads(lake.get(events_prefix + "_compaction.json"))
    assert {o["key"] for o in manifest["live"]} <= set(objects_after)
    assert not set(manifest["replaced"]) & set(objects_after)

    # Every reader sees what it saw before: the Glue tables' readers, the raw zone...
    assert {d: hive_reading(lake, d, hour) for d in TABLES} == before
    assert lake.raw_records() == raw_before
    assert any("/compacted-" in k for k in lake.keys("raw/events/"))
    # ...and the loader, which is told about each new object and loads none of them.
    written = len(objects_after)
    wait_for(
        lambda: loader_skipped(scenario.stack) >= skipped_before + written,
        120,
        what="the loader to skip the compacted objects' notifications",
    )
    assert ledger_keys(scenario.dsn) == ledger_before


def dq_latest(dsn: str, hour: datetime) -> dict[tuple[str, str], tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT check_name, subject, expected, observed, status, detail "
            "FROM analytics.dq_latest WHERE hour = %s",
            (hour,),
        ).fetchall()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def prometheus(stack: RunningStack, path: str, **params: str) -> Any:
    answer = httpx.get(f"{stack.info.prometheus_url}{path}", params=params, timeout=5).json()
    return answer["data"]


def test_data_quality_checks_pass_on_the_compacted_lake(scenario: Scenario) -> None:
    summary = scenario.run("clickstream_data_quality", {"hour": scenario.hour.isoformat()})
    succeeded(summary)
    results = dq_latest(scenario.dsn, scenario.hour)
    assert {c for c, _ in results} == set(ISSUE_CHECKS)
    bad = {k: v for k, v in results.items() if v[2] != "ok"}
    assert not bad, bad
    events = len({e["event_id"] for e in scenario.on_time + scenario.late})
    assert results[("event_counts", "events")][:2] == (events, events)
    for dataset in ("event_counts_minute", "active_users_5m", "page_views_minute", "sessions"):
        expected, observed = results[("aggregates", dataset)][:2]
        assert expected == observed and expected > 0, dataset

    # Pushed, scraped, and no alert.
    def scraped() -> int:
        query = "clickstream_dq_check_failed"
        return len(prometheus(scenario.stack, "/api/v1/query", query=query)["result"])

    wait_for(lambda: scraped() >= len(results), 60, what="Prometheus to scrape the results")
    failed = prometheus(scenario.stack, "/api/v1/query", query="max(clickstream_dq_check_failed)")
    assert float(failed["result"][0]["value"][1]) == 0.0


def test_data_quality_catches_a_row_deleted_from_the_warehouse(scenario: Scenario) -> None:
    start, end = scenario.period
    with psycopg.connect(scenario.dsn) as conn:
        source, event_id = conn.execute(
            "SELECT source, event_id FROM analytics.events WHERE event_time >= %s "
            "AND event_time < %s ORDER BY event_id LIMIT 1",
            (start, end),
        ).fetchone()
        conn.execute(
            "CREATE TEMP TABLE deleted AS SELECT * FROM analytics.events "
            "WHERE source = %s AND event_id = %s",
            (source, event_id),
        )
        conn.execute(
            "DELETE FROM analytics.events WHERE source = %s AND event_id = %s", (source, event_id)
        )
        conn.commit()
        try:
            summary = scenario.run("clickstream_data_quality", {"hour": scenario.hour.isoformat()})
            assert summary["state"] == "failed" and summary["returncode"] == 1
            assert summary["tasks"]["record"] == "success"
            assert summary["tasks"]["verdict"] == "failed"
            results = dq_latest(scenario.dsn, scenario.hour)
            expected, observed, status, detail = results[("event_counts", "events")]
            assert status == "failed" and observed == expected - 1
            assert event_id in detail
            assert results[("duplicates", "events")][2] == "ok"

            def alert_firing() -> bool:
                alerts = prometheus(scenario.stack, "/api/v1/alerts")["alerts"]
                return any(
                    a["labels"].get("alertname") == "ClickstreamDataQualityMismatch"
                    and a["labels"].get("check") == "event_counts"
                    and a["state"] == "firing"
                    for a in alerts
                )

            wait_for(alert_firing, 120, interval=2, what="ClickstreamDataQualityMismatch to fire")
        finally:
            conn.execute("INSERT INTO analytics.events SELECT * FROM deleted")
            conn.commit()


def test_backfill_rebuilds_the_hour_from_the_raw_zone_as_streaming_did(scenario: Scenario) -> None:
    start, end = scenario.period
    everything = scenario.on_time + scenario.late
    users = {user_key(e) for e in everything}
    # What streaming gives once the correction has made every window final: the independent
    # computation over every event (not the warehouse as the earlier tests left it, so the
    # test holds when run alone, before the hourly correction has brought the late events in).
    streamed = (
        in_period(expected_windows(everything), *scenario.compared),
        {k: v for k, v in expected_sessions(everything, GAP).items() if v[0] in users},
    )
    with psycopg.connect(scenario.dsn) as conn:
        for table in (
            "event_counts_minute",
            "active_users_5m",
            "page_views_minute",
            "product_stats_minute",
        ):
            conn.execute(
                f"DELETE FROM analytics.{table} WHERE window_start >= %s AND window_start < %s",
                (start, end),
            )
        conn.execute(
            "DELETE FROM analytics.sessions WHERE session_start >= %s AND session_start < %s",
            (start, end),
        )
    assert not any(warehouse_windows(scenario.dsn, start, end).values())

    summary = scenario.run(
        "clickstream_backfill", {"start": start.isoformat(), "end": end.isoformat()}
    )
    succeeded(summary)
    assert "hour 1/1" in summary["log"]  # the progress, hour by hour
    rebuilt = (
        warehouse_windows(scenario.dsn, *scenario.compared),
        warehouse_sessions(scenario.dsn, users),
    )
    assert rebuilt == streamed, {t: diff(streamed[0][t], rebuilt[0][t]) for t in streamed[0]}
    with psycopg.connect(scenario.dsn) as conn:
        (lowest,) = conn.execute(
            "SELECT min(batch_id) FROM analytics.event_counts_minute "
            "WHERE window_start >= %s AND window_start < %s",
            (start, end),
        ).fetchone()
    assert lowest >= CORRECTION_BATCH_BASE  # the rows came through the backfill's batches
