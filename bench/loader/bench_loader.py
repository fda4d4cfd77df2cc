"""warehouse-loader benchmark: load throughput beside a bare COPY, and load lag.

Run from the repository root:

    uv run python bench/loader/bench_loader.py [--rows 150000] [--rounds 7] [--lag-batches 60]

It starts a platform of its own (Kafka, versitygw, PostgreSQL; free ports, state under
.state/test-stacks/) and stops it at the end.

1. Throughput. One large committed `events` batch (Parquet objects in versitygw, one per
   hour partition, plus its commit marker) is loaded through the loader's real code path
   (marker -> S3 GET -> Parquet -> CSV -> COPY FROM STDIN -> ledger, one transaction). The
   baseline, in the same run, is a bare `COPY ... FROM STDIN (FORMAT csv)` of the same rows,
   already rendered in memory, into a table of the same definition and indexes: what the
   database can take at most. Rounds alternate the two; medians are reported. The merge path
   (staging + INSERT ... ON CONFLICT, taken when a batch repeats stored keys) is measured too.
2. Lag. The loader runs as its own process with Kafka notifications; every --lag-interval
   seconds a micro-batch of all six data sets is committed to S3 like the processor does.
   Lag per batch = ledger.loaded_at (set just before commit) - marker.committed_at.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from clickstream_common.lake import commit_marker_key  # noqa: E402
from clickstream_common.tables import EVENTS, Dialect  # noqa: E402
from clickstream_local.components import child_env  # noqa: E402
from clickstream_local.config import StackConfig, free_ports  # noqa: E402
from clickstream_local.services import service_env  # noqa: E402
from clickstream_local.stack import Stack  # noqa: E402
from tests.loader.lakedata import (  # noqa: E402
    big_events,
    build_batches,
    write_all,
    write_table_batch,
)
from warehouse_loader import sql  # noqa: E402
from warehouse_loader.batches import conform, csv_chunks  # noqa: E402
from warehouse_loader.loader import BatchLoader, apply_migrations  # noqa: E402
from warehouse_loader.notifications import MarkerNotice  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def throughput(conn: psycopg.Connection, s3: object, bucket: str, rows: int, rounds: int) -> None:
    now = datetime.now(UTC)
    table = big_events(1, rows, now)
    csv = list(csv_chunks(conform(table, EVENTS)))
    size = sum(len(c) for c in csv)
    conn.execute("CREATE TABLE analytics.events_baseline (LIKE analytics.events INCLUDING ALL)")
    baseline: list[float] = []
    loader_fast: list[float] = []
    loader_merge: list[float] = []
    # CPU seconds (database backend, this process) per run: immune to other machine load.
    cpu: dict[str, list[tuple[float, float]]] = {"bare": [], "fast": [], "merge": []}
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    backend = int(row[0]) if row else 0

    def cpu_now() -> tuple[float, float]:
        fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks, time.process_time()

    def cpu_since(before: tuple[float, float]) -> tuple[float, float]:
        after = cpu_now()
        return after[0] - before[0], after[1] - before[1]

    def bare_copy() -> None:
        conn.execute("TRUNCATE analytics.events_baseline")
        conn.execute("CHECKPOINT")
        cpu0, start = cpu_now(), time.perf_counter()
        with conn.transaction():
            conn.execute("SET LOCAL TIME ZONE 'UTC'")
            with (
                conn.cursor() as cursor,
                cursor.copy(sql.copy_from_stdin_sql(EVENTS, "analytics.events_baseline")) as copy,
            ):
                for chunk in csv:
                    copy.write(chunk)
        baseline.append(rows / (time.perf_counter() - start))
        cpu["bare"].append(cpu_since(cpu0))

    def through_loader(batch_id: int, fast: bool) -> None:
        # A batch of its own (new marker), into an empty table like the baseline's.
        batch = table.set_column(
            table.schema.get_field_index("batch_id"), "batch_id", pa.array([batch_id] * rows)
        )
        write_table_batch(s3, bucket, "events", batch_id, batch)
        conn.execute("TRUNCATE analytics.events")
        conn.execute("CHECKPOINT")
        notice = MarkerNotice(bucket, commit_marker_key("events", batch_id), "", "events", batch_id)
        cpu0, start = cpu_now(), time.perf_counter()
        result = BatchLoader(conn, s3, fast_insert=fast).load(notice)
        elapsed = time.perf_counter() - start
        cpu["fast" if fast else "merge"].append(cpu_since(cpu0))
        assert result.loaded and result.rows == rows, result
        (loader_fast if fast else loader_merge).append(rows / elapsed)

    for r in range(rounds):
        steps = [
            bare_copy,
            functools.partial(through_loader, 10 + 2 * r, True),
            functools.partial(through_loader, 11 + 2 * r, False),
        ]
        # Alternate the order, so neither side always runs first (cache, checkpoints).
        for step in steps if r % 2 == 0 else reversed(steps):
            step()
        print(
            f"  round {r + 1}: bare COPY {baseline[-1]:,.0f} rows/s, "
            f"loader {loader_fast[-1]:,.0f} rows/s, "
            f"merge path {loader_merge[-1]:,.0f} rows/s",
            flush=True,
        )
    b, f, m = (statistics.median(x) for x in (baseline, loader_fast, loader_merge))
    # Rounds are paired: the ratio within a round is immune to load drifting between rounds.
    fast_ratio = statistics.median(x / y for x, y in zip(loader_fast, baseline, strict=True))
    merge_ratio = statistics.median(x / y for x, y in zip(loader_merge, baseline, strict=True))
    print(
        f"\nthroughput: {rows:,} event rows ({size / 1e6:.0f} MB as CSV), medians of {rounds} "
        f"rounds; load average {os.getloadavg()[1]:.1f} on {os.cpu_count()} cores"
    )
    print(f"  bare COPY FROM STDIN (baseline)     {b:>10,.0f} rows/s")
    print(
        f"  loader (S3 + Parquet + COPY)        {f:>10,.0f} rows/s   {fast_ratio:.0%} of baseline"
    )
    print(
        f"  loader, merge path (staging+merge)  {m:>10,.0f} rows/s   {merge_ratio:.0%} of baseline"
    )
    pairs = ", ".join(f"{x / y:.2f}" for x, y in zip(loader_fast, baseline, strict=True))
    print(f"  loader / bare COPY per round: {pairs}")
    print("  CPU seconds per 100k rows, medians (database backend / loader process):")
    for name, label in (("bare", "bare COPY"), ("fast", "loader"), ("merge", "merge path")):
        db = statistics.median(c[0] for c in cpu[name]) * 100_000 / rows
        client = statistics.median(c[1] for c in cpu[name]) * 100_000 / rows
        print(f"    {label:<11} {db:5.2f} / {client:5.2f}")


def lag(stack: Stack, dsn: str, s3: object, bucket: str, batches: int, interval: float) -> None:
    port = free_ports(1)[0]
    env = service_env(stack.config, "warehouse-loader") | {
        "S3_BUCKET": bucket,
        "WAREHOUSE_DSN": dsn,
        "LOADER_CONSUMER_GROUP": f"bench-{uuid.uuid4().hex[:6]}",
        "LOADER_METRICS_HOST": "127.0.0.1",
        "LOADER_METRICS_PORT": str(port),
        "LOADER_RECONCILE_INTERVAL_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    log = (stack.config.logs_dir / "bench-loader.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "warehouse_loader"],
        env=child_env(env),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        now = datetime.now(UTC)
        # Processor-sized micro-batches: ~200 events and their aggregates per batch.
        lake_batches = build_batches(now - timedelta(minutes=10), now, 200 * batches, batches)
        markers = 0
        for batch in lake_batches:
            batch.batch_id += 1000
            for rows in batch.rows.values():
                for row in rows:
                    row["batch_id"] = batch.batch_id
            markers += write_all(s3, bucket, [batch])
            time.sleep(interval)
        with psycopg.connect(dsn) as conn:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                done = conn.execute(
                    "SELECT count(*) FROM analytics.load_ledger WHERE batch_id >= 1000"
                ).fetchone()
                if done and done[0] >= markers:
                    break
                time.sleep(0.5)
            lags = [
                float(r[0])
                for r in conn.execute(
                    "SELECT EXTRACT(EPOCH FROM loaded_at - marker_created_at) "
                    "FROM analytics.load_ledger WHERE batch_id >= 1000"
                ).fetchall()
            ]
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    assert len(lags) == markers, (len(lags), markers)
    print(
        f"\nload lag: {markers} committed batches ({batches} micro-batches x 6 data sets, "
        f"one every {interval:g} s), processor commit -> warehouse commit"
    )
    print(
        f"  p50 {percentile(lags, 0.5):.3f} s   p95 {percentile(lags, 0.95):.3f} s   "
        f"max {max(lags):.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--lag-batches", type=int, default=60)
    parser.add_argument("--lag-interval", type=float, default=1.0)
    args = parser.parse_args()

    config = StackConfig.scratch("test-stacks", f"bench-loader-{os.getpid()}")
    state = config.state_dir
    stack = Stack(config, progress=lambda line: print(line, flush=True))
    try:
        stack.start(platform=True, services=False)
        info = stack.connection_info()
        s3 = info.s3_client()
        bucket = info.s3_bucket
        dsn = info.warehouse_dsn
        with psycopg.connect(dsn, autocommit=True) as conn:
            apply_migrations(conn, sql.migrations(Dialect.POSTGRES))
            throughput(conn, s3, bucket, args.rows, args.rounds)
            conn.execute("DROP TABLE analytics.events_baseline")
        # A bucket of its own: the loader skips the throughput batches' notifications.
        lag_bucket = "bench-lag"
        s3.create_bucket(Bucket=lag_bucket)
        lag(stack, dsn, s3, lag_bucket, args.lag_batches, args.lag_interval)
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
