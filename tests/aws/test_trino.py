"""The lake through the generated Glue tables, queried with Trino (Athena's engine), answers
exactly what the warehouse answers.

A stack of its own runs the whole pipeline (collector -> Kafka -> Spark -> lake -> loader ->
PostgreSQL) on simulated shoppers; `catalog_cli register` puts the tables and views into a
local Glue endpoint (moto); Trino reads them with the lake's S3 server. For every data set and
a time range, the rows of `<name>_current` equal the rows of the warehouse table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trino

from anomaly_detector.output import lake_table
from clickstream_common.catalog import view_name
from clickstream_common.lake import parse_commit_marker_key
from clickstream_common.lake_writer import DatasetWriter
from clickstream_common.schema import LogicalType
from clickstream_common.tables import ANOMALIES, TABLES, TableSpec, qualified, quote_identifier
from clickstream_local.aws_parts import MOTO_ACCESS_KEY, MOTO_SECRET_KEY, TRINO_CATALOG
from tests.conftest import RunningStack, send_closed_range, wait_for

pytestmark = pytest.mark.platform

DATABASE = "clickstream"


@pytest.fixture(scope="module")
def lake_stack() -> Iterator[RunningStack]:
    """One pipeline stack for this module, with moto and Trino beside it."""
    from tests.conftest import _new_stack, _stop

    # A one-minute session gap, so the sessions of the test's traffic close within the test.
    env = {"stream-processor": {"PROCESSOR_SESSION_GAP": "1 minute"}}
    stack, state = _new_stack(("ingest-api", "stream-processor", "warehouse-loader"), env)
    try:
        for name in ("moto", "trino"):
            stack.components[name].launch()
        for name in ("moto", "trino"):
            stack.components[name].wait_ready()
        yield RunningStack(stack, stack.connection_info())
    finally:
        _stop(stack, state)


def _s3(info: Any) -> Any:
    return info.s3_client()


def _commit_markers(info: Any) -> set[str]:
    keys: set[str] = set()
    for page in (
        _s3(info)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=info.s3_bucket, Prefix="processed/")
    ):
        keys |= {o["Key"] for o in page.get("Contents", []) if parse_commit_marker_key(o["Key"])}
    return keys


def _ledger(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT object_key FROM analytics.load_ledger WHERE status = 'loaded'"
        ).fetchall()
    return {r[0] for r in rows}


def _normalise(spec: TableSpec, row: tuple[Any, ...]) -> tuple[Any, ...]:
    """One row as comparable values: timestamps as naive UTC to the millisecond (Athena's
    and Trino's precision, hive.timestamp-precision), JSON as parsed objects."""
    out: list[Any] = []
    for column, value in zip(spec.columns, row, strict=True):
        if value is not None and column.type is LogicalType.TIMESTAMP:
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            # Trino (and Athena) read a microsecond timestamp rounded half up to milliseconds.
            ms = (value.microsecond + 500) // 1000
            value = value.replace(microsecond=0) + timedelta(milliseconds=ms)
        elif value is not None and column.type is LogicalType.JSON and isinstance(value, str):
            value = json.loads(value)
        elif isinstance(value, Decimal):
            value = float(value)
        out.append(json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value)
    return tuple(out)


def _warehouse_rows(dsn: str, spec: TableSpec, start: datetime, end: datetime) -> list[Any]:
    columns = ", ".join(quote_identifier(c) for c in spec.column_names)
    time = quote_identifier(spec.time_column)
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        rows = conn.execute(
            f"SELECT {columns} FROM {qualified(spec)} WHERE {time} >= %s AND {time} < %s",
            (start, end),
        ).fetchall()
    return sorted((_normalise(spec, r) for r in rows), key=repr)


def _trino_rows(port: int, spec: TableSpec, start: datetime, end: datetime) -> list[Any]:
    columns = ", ".join(f'"{c}"' for c in spec.column_names)
    time = f'"{spec.time_column}"'
    # Timestamps in the lake are UTC wall-clock values (timestamp without zone).
    low, high = (f"TIMESTAMP '{t.astimezone(UTC):%Y-%m-%d %H:%M:%S}'" for t in (start, end))
    # The partition filter prunes the projected partitions, as an Athena user would write it.
    days = sorted({(start + timedelta(days=d)).date().isoformat() for d in range(-1, 2)})
    sql = (
        f"SELECT {columns} FROM {view_name(spec)} "
        f"WHERE {time} >= {low} AND {time} < {high} "
        f'AND "date" IN ({", ".join(repr(d) for d in days)})'
    )
    conn = trino.dbapi.connect(
        host="127.0.0.1", port=port, user="test", catalog=TRINO_CATALOG, schema=DATABASE
    )
    try:
        cursor = conn.cursor()
        cursor.execute(sql)
        rows = cursor.fetchall()
    finally:
        conn.close()
    return sorted((_normalise(spec, tuple(r)) for r in rows), key=repr)


def _diff(spec: TableSpec, got: list[Any], expected: list[Any]) -> str:
    """The first differing columns of the first rows that differ (rows paired by key)."""
    key = [spec.column_names.index(k) for k in spec.key]
    mine = {tuple(r[i] for i in key): r for r in got}
    theirs = {tuple(r[i] for i in key): r for r in expected}
    lines = [f"{len(got)} rows from Trino, {len(expected)} from the warehouse"]
    lines.append(f"keys only in Trino: {sorted(set(mine) - set(theirs), key=repr)[:3]}")
    lines.append(f"keys only in the warehouse: {sorted(set(theirs) - set(mine), key=repr)[:3]}")
    for k in sorted(set(mine) & set(theirs), key=repr):
        if mine[k] != theirs[k]:
            cols = [
                f"{c}: {a!r} != {b!r}"
                for c, a, b in zip(spec.column_names, mine[k], theirs[k], strict=True)
                if a != b
            ]
            lines.append(f"key {k}: " + "; ".join(cols))
            break
    return "\n".join(lines)


@dataclass(frozen=True)
class LoadedLake:
    stack: RunningStack
    start: datetime  # the traffic's event-time range
    end: datetime
    events: int


@pytest.fixture(scope="module")
def loaded_lake(lake_stack: RunningStack) -> LoadedLake:
    """Simulated shoppers through the whole pipeline, until every batch is in the warehouse."""
    info = lake_stack.info
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start, end = now - timedelta(minutes=10), now - timedelta(minutes=5)
    events, _ = send_closed_range(info, start, end, 2000, seed=414)

    def sessions_loaded() -> int | None:
        with psycopg.connect(info.warehouse_dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM analytics.sessions WHERE session_start >= %s "
                "AND session_start < %s",
                (start, end),
            ).fetchone()
        return row[0] if row and row[0] else None

    wait_for(sessions_loaded, timeout=300, interval=3, what="closed sessions in the warehouse")
    # Simulated shoppers make no anomaly (the detector needs 20 minutes of history first):
    # write two scored minutes the way the detector does, so its table is compared too.
    anomalies = [
        {
            "window_start": (start + timedelta(minutes=i)).isoformat(),
            "window_end": (start + timedelta(minutes=i + 1)).isoformat(),
            "series": "events:page_view:web",
            "observed": 250.0 + i,
            "expected": 80.0,
            "expected_low": 60.0,
            "expected_high": 100.0,
            "score": 9.5 + i,
            "model": "seasonal",
            "detected_at": (start + timedelta(minutes=i + 1, seconds=12)).isoformat(),
        }
        for i in range(2)
    ]
    batch_id = int(start.timestamp()) + 60
    DatasetWriter(_s3(info), info.s3_bucket).write_table(
        ANOMALIES.name,
        lake_table(anomalies, batch_id),
        batch_id,
        ANOMALIES.time_column,
    )

    # Quiet pipeline: every commit marker in the lake is loaded, twice in a row.
    settled: list[set[str]] = []

    def everything_loaded() -> bool:
        markers = _commit_markers(info)
        done = bool(markers) and markers <= _ledger(info.warehouse_dsn)
        settled.append(markers if done else set())
        return done and len(settled) >= 2 and settled[-1] == settled[-2]

    wait_for(everything_loaded, timeout=180, interval=5, what="the loader to load every batch")
    return LoadedLake(lake_stack, start, end, len(events))


def test_trino_over_the_glue_tables_answers_what_the_warehouse_answers(
    loaded_lake: LoadedLake,
) -> None:
    info = loaded_lake.stack.info
    config = loaded_lake.stack.stack.config
    start, end = loaded_lake.start, loaded_lake.end
    now = datetime.now(UTC)
    projection_start = (now - timedelta(days=1)).date()
    register = subprocess.run(
        [
            sys.executable,
            "-m",
            "clickstream_common.catalog_cli",
            "register",
            "--bucket",
            info.s3_bucket,
            "--database",
            DATABASE,
            "--endpoint-url",
            config.moto_endpoint,
            "--region",
            info.s3_region,
            "--projection-start",
            projection_start.isoformat(),
        ],
        env={
            **os.environ,
            "AWS_ACCESS_KEY_ID": MOTO_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": MOTO_SECRET_KEY,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert register.returncode == 0, register.stderr
    for spec in TABLES.values():
        assert f"{spec.name}: created" in register.stdout
        assert f"{view_name(spec)}: created" in register.stdout

    compared: dict[str, int] = {}
    for spec in TABLES.values():
        expected = _warehouse_rows(info.warehouse_dsn, spec, start, end)
        got = _trino_rows(config.trino_port, spec, start, end)
        assert got == expected, f"{spec.name}: Trino and the warehouse differ: " + _diff(
            spec, got, expected
        )
        compared[spec.name] = len(expected)
    # Every data set had rows in the range: the comparison is not between two empty sets.
    assert all(compared.values()), compared
    assert compared["events"] == loaded_lake.events


def test_projection_start_is_a_date() -> None:
    # The CLI refuses a malformed start before touching Glue.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "clickstream_common.catalog_cli",
            "athena",
            "--bucket",
            "b",
            "--projection-start",
            "yesterday",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "projection-start" in proc.stderr


def test_the_duckdb_example_reads_what_the_warehouse_holds(loaded_lake: LoadedLake) -> None:
    """docs/examples/duckdb_lake.py, run as a user would, against the same lake."""
    info = loaded_lake.stack.info
    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "duckdb_lake.py"
    proc = subprocess.run(
        [sys.executable, str(example)],
        env={
            **os.environ,
            "LAKE_BUCKET": info.s3_bucket,
            "S3_ENDPOINT_URL": info.s3_endpoint,
            "AWS_ACCESS_KEY_ID": info.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": info.s3_secret_key,
            "AWS_REGION": info.s3_region,
            "LAKE_FROM": loaded_lake.start.isoformat(),
            "LAKE_TO": loaded_lake.end.isoformat(),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    got = set()
    for line in proc.stdout.splitlines():
        when, event_type, events, users = line.split(",")
        got.add((datetime.fromisoformat(when), event_type, int(events), int(users)))
    with psycopg.connect(info.warehouse_dsn) as conn:
        rows = conn.execute(
            "SELECT window_start, event_type, events, unique_users "
            "FROM analytics.event_counts_minute WHERE window_start >= %s AND window_start < %s",
            (loaded_lake.start, loaded_lake.end),
        ).fetchall()
    expected = {(r[0].astimezone(UTC), r[1], r[2], r[3]) for r in rows}
    assert expected and got == expected
