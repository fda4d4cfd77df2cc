"""What the watermark delay costs: state rows, state size and driver heap against the delay.

    uv run python bench/latedata/watermark.py [--delays 30s,1m,2m,5m,10m] [--event-rate 400]
        [--rows-per-batch 4000] [--users 3000] [--gap 30m]

Runs the streaming job's two stateful queries (`windows`: deduplicate + window_aggregates in
update mode; `sessions`: deduplicate + sessions in append mode) with the job's own transforms
and Spark settings (RocksDB state, local[2], 2 shuffle partitions) once per watermark delay,
and reports their state once it has stopped growing.

The input is Spark's `rate-micro-batch` source: every micro-batch brings `--rows-per-batch`
events, each `1 / --event-rate` seconds of event time after the last, however fast the machine
runs them. So the state holds what a site with `--event-rate` events per second and `--users`
concurrent visitors (each active 5 minutes) would hold, and a 10-minute delay with a
30-minute session gap fills in minutes of wall time. Events arrive up to 20 s out of order.

Each delay runs until both queries' watermarks have passed gap + 10 minutes of event time and
five more batches have run (state is then steady: windows and dedup keys behind the watermark
are evicted, sessions close a gap after their last event); the figures are the mean of the
next five batches. State size is RocksDB's SST files (`rocksdbSstFileSize`); the heap is the
driver JVM's used heap after a full GC while the queries run (`local[2]`: the executors run
in it).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from stream_processor import transforms
from stream_processor.config import Settings
from stream_processor.spark_setup import build_session

EVENT_TYPES = ("page_view", "page_view", "page_view", "product_view", "product_view", "search",
               "add_to_cart", "purchase")  # fmt: skip
START = datetime(2026, 1, 1, tzinfo=UTC)


def duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([smh])", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r}: use e.g. 30s, 2m, 1h")
    unit = {"s": "seconds", "m": "minutes", "h": "hours"}[match[2]]
    return timedelta(**{unit: int(match[1])})


def spark_interval(delta: timedelta) -> str:
    return f"{int(delta.total_seconds())} seconds"


def synthetic_events(
    spark: SparkSession, rows_per_batch: int, event_rate: int, users: int
) -> DataFrame:
    """Shopper-like events, `rows_per_batch` per micro-batch, in the aggregate input's columns."""
    rate = (
        spark.readStream.format("rate-micro-batch")
        .option("rowsPerBatch", rows_per_batch)
        .option("numPartitions", 2)
        .load()
    )
    v = F.col("value")
    # Out of order by up to 20 s (a deterministic scramble of the row number).
    disorder = (F.abs(F.hash(v)) % 20_000).cast("double") / 1000.0
    seconds = v.cast("double") / float(event_rate) - disorder
    event_time = F.timestamp_seconds(F.lit(START.timestamp()) + seconds)
    # `users` visitors at a time, each active for 5 minutes of event time.
    cohort = (v / F.lit(event_rate * 300)).cast("long")
    visitor = (F.abs(F.hash(v, F.lit(1))) % users).cast("string")
    user = F.concat(F.lit("u"), cohort.cast("string"), F.lit("-"), visitor)
    types = F.array(*[F.lit(t) for t in EVENT_TYPES])
    kind = F.element_at(types, (v % len(EVENT_TYPES) + 1).cast("int"))
    product = F.concat(F.lit("p-"), (F.abs(F.hash(v, F.lit(2))) % 500).cast("string"))
    return rate.select(
        F.concat(F.lit("e-"), v.cast("string")).alias("event_id"),
        F.lit("bench").alias("source"),
        kind.alias("event_type"),
        event_time.alias("event_time"),
        F.col("timestamp").alias("received_at"),
        user.alias("user_key"),
        F.concat(F.lit("/p/"), (v % 50).cast("string")).alias("page_path"),
        F.when(kind.isin("product_view", "add_to_cart", "purchase"), product).alias("product_id"),
        F.lit(1).cast("long").alias("quantity"),
        F.lit(19.9).alias("price"),
        F.lit(None).cast("double").alias("revenue"),
        F.lit(False).alias("is_bot"),
    )


@dataclass
class Figures:
    delay: timedelta
    windows_rows: float
    windows_bytes: float
    sessions_rows: float
    sessions_bytes: float
    heap: float
    batch_seconds: float


def _state(progress: dict[str, Any]) -> tuple[float, float]:
    """Rows and RocksDB SST bytes over a query's stateful operators."""
    operators = progress.get("stateOperators", [])
    rows = sum(op.get("numRowsTotal", 0) for op in operators)
    size = sum(op.get("customMetrics", {}).get("rocksdbSstFileSize", 0) for op in operators)
    return rows, size


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def heap_after_gc(spark: SparkSession) -> float:
    jvm: Any = spark.sparkContext._jvm
    jvm.java.lang.System.gc()
    runtime = jvm.java.lang.Runtime.getRuntime()
    return float(runtime.totalMemory() - runtime.freeMemory())


def run_delay(
    spark: SparkSession, delay: timedelta, gap: timedelta, args: argparse.Namespace
) -> Figures:
    checkpoints = tempfile.mkdtemp(prefix="bench-watermark-")
    events = transforms.deduplicate(
        synthetic_events(spark, args.rows_per_batch, args.event_rate, args.users),
        spark_interval(delay),
    )
    windows = (
        transforms.window_aggregates(events)
        .writeStream.format("noop")
        .outputMode("update")
        .option("checkpointLocation", f"{checkpoints}/windows")
        .start()
    )
    sessions = (
        transforms.sessions(events, spark_interval(gap))
        .writeStream.format("noop")
        .outputMode("append")
        .option("checkpointLocation", f"{checkpoints}/sessions")
        .start()
    )
    # Steady once event time has run delay + gap + 10 minutes: run until both watermarks
    # (newest event time minus the delay) have passed that point, then sample 5 batches.
    steady = START + gap + timedelta(minutes=10)
    batches = (delay + gap + timedelta(minutes=10)).total_seconds() * args.event_rate
    print(f"delay {delay}: about {batches / args.rows_per_batch:.0f} batches", flush=True)
    warm = 0
    samples: list[tuple[float, float, float, float, float]] = []
    sampled: set[int] = set()
    try:
        while len(samples) < 5:
            time.sleep(5)
            for query in (windows, sessions):
                if query.exception() is not None:
                    raise RuntimeError(str(query.exception()))
            w, s = windows.lastProgress, sessions.lastProgress
            if not w or not s:
                continue
            marks = [p.get("eventTime", {}).get("watermark") for p in (w, s)]
            if not all(marks) or min(_time(m) for m in marks if m) < steady:
                continue
            if w["batchId"] not in sampled:
                sampled.add(w["batchId"])
                warm += 1
                if warm <= 5:
                    continue
                w_rows, w_mem = _state(w)
                s_rows, s_mem = _state(s)
                batch = w["durationMs"].get("triggerExecution", 0) / 1000.0
                samples.append((w_rows, w_mem, s_rows, s_mem, batch))
                if len(samples) == 1:
                    metrics = {
                        k: v
                        for op in w.get("stateOperators", []) + s.get("stateOperators", [])
                        for k, v in op.get("customMetrics", {}).items()
                    }
                    print(f"  state store metrics: {sorted(metrics)}", flush=True)
        # While the queries run: what their batches keep on the driver's heap.
        heap = heap_after_gc(spark)
    finally:
        windows.stop()
        sessions.stop()
    shutil.rmtree(checkpoints, ignore_errors=True)
    last = samples[-5:]
    return Figures(
        delay,
        statistics.mean(x[0] for x in last),
        statistics.mean(x[1] for x in last),
        statistics.mean(x[2] for x in last),
        statistics.mean(x[3] for x in last),
        heap,
        statistics.mean(x[4] for x in last),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", default="30s,1m,2m,5m,10m")
    parser.add_argument("--rows-per-batch", type=int, default=4000)
    parser.add_argument("--event-rate", type=int, default=400)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--gap", type=duration, default=timedelta(minutes=30))
    args = parser.parse_args()
    delays = [duration(d) for d in args.delays.split(",")]

    settings = Settings()
    spark = build_session(settings, overrides={"spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    results = []
    for delay in delays:
        results.append(run_delay(spark, delay, args.gap, args))
        # Each delay's row as soon as it is measured: a run cut short keeps what it took.
        print(f"  {row(results[-1])}", flush=True)
    spark.stop()

    print()
    print(
        f"event rate {args.event_rate}/s, {args.users} visitors at a time, gap {args.gap}, "
        f"{args.rows_per_batch} events ({args.rows_per_batch / args.event_rate:.0f} s) per batch"
    )
    print("| delay | windows state rows | windows state MB | sessions state rows | "
          "sessions state MB | driver heap MB | batch s |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(row(r))


def row(r: Figures) -> str:
    return (
        f"| {r.delay} | {r.windows_rows:,.0f} | {r.windows_bytes / 1e6:.1f} | "
        f"{r.sessions_rows:,.0f} | {r.sessions_bytes / 1e6:.1f} | {r.heap / 1e6:.0f} | "
        f"{r.batch_seconds:.2f} |"
    )


if __name__ == "__main__":
    main()
