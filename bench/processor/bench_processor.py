"""stream-processor benchmark: the full job beside a bare read-and-count query, at local[1]
and local[2] in one run (events/s and events/s per core: the scaling of #17).

Run from the repository root:

    uv run python bench/processor/bench_processor.py [--events 1000000] [--steady-seconds 60]
        [--masters 'local[1],local[2],local-cluster[2,1,2048]']

It starts Kafka and versitygw of its own (free ports, state under .state/test-stacks/) and
stops them at the end. One run measures:

1. Capacity. The events topic is loaded first with --events enriched shopper events
   (simulator sessions, unique ids, no compression, like the collector publishes). Then, on
   each master of --masters in turn (local[1], then local[2]; local-cluster[n,c,m] starts n
   executor JVMs of c cores and m MB on this machine), each from the earliest offset
   with the job's own Spark settings (same maxOffsetsPerTrigger):
   * baseline: a bare query that only reads the topic and counts each micro-batch, batches
     back to back (the Spark + Kafka ceiling on this machine; on the job's trigger it would
     measure the clock: maxOffsetsPerTrigger rows per trigger);
   * the full job (`python -m stream_processor`, all three queries) until every query has
     committed the whole topic. Rate = events / (last commit - queries started).
   Micro-batch durations p50/p95 come from the job's "batch finished" log lines. Per master:
   events/s, events/s per core (task slots), and the speed-up of the last over the first.
2. Steady state. After the backlog, events stamped "now" are produced at --steady-rate
   (default: half the measured full-job rate) for --steady-seconds. Lag (topic end minus
   each query's committed offsets) is sampled every 2 s; freshness per event is
   events marker `committed_at` minus the event's `received_at` (stamped when produced, so
   at or before the Kafka append), and per window batch `committed_at` minus its newest
   `received_at`.

Everything runs on the same 2 cores, the producer of phase 2 included.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import orjson
import pyarrow.parquet as pq
import pyspark
from confluent_kafka import Producer

from clickstream_common.lake import CommitMarker, commit_marker_key, read_commit_marker
from clickstream_local.config import BUCKET, EVENTS_TOPIC, StackConfig
from clickstream_local.services import service_env
from clickstream_local.stack import Stack
from clickstream_simulator.generator import ClickstreamGenerator

QUERIES = ("lake", "windows", "sessions")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Events:
    """A pool of generated shopper events re-stamped with fresh ids and times."""

    def __init__(self, seed: int = 7) -> None:
        now = datetime.now(UTC)
        self.pool = ClickstreamGenerator(seed=seed, users=20_000, products=2_000).events_between(
            now - timedelta(minutes=10), now, 50_000
        )
        self.run = uuid.uuid4().hex[:8]
        self.n = 0

    def make(self, at: datetime, received: datetime) -> tuple[bytes, bytes]:
        event = dict(self.pool[self.n % len(self.pool)])
        event["event_id"] = f"{self.run}-{self.n:010d}"
        stamp = at.isoformat()
        event.update(
            timestamp=stamp, event_time=stamp, received_at=received.isoformat(), source="bench"
        )
        self.n += 1
        key = (event.get("user_id") or event["anonymous_id"]).encode()
        return key, orjson.dumps(event)


def producer(bootstrap: str) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def produce(p: Producer, key: bytes, value: bytes) -> None:
    while True:
        try:
            p.produce(EVENTS_TOPIC, value, key=key)
            return
        except BufferError:
            p.poll(0.05)


def load_backlog(bootstrap: str, events: Events, count: int) -> tuple[float, int]:
    """Produce `count` events; (events per second, the largest record's bytes)."""
    p = producer(bootstrap)
    start = datetime.now(UTC) - timedelta(minutes=30)
    t0 = time.monotonic()
    largest = 0
    for i in range(count):
        # Event times spread over the 30 minutes before now, in order.
        at = start + timedelta(milliseconds=i * 1_800_000 // count)
        key, value = events.make(at, at)
        largest = max(largest, len(value))
        produce(p, key, value)
        if i % 20_000 == 0:
            p.poll(0)
    p.flush(120)
    return count / (time.monotonic() - t0), largest


def lake_client(config: StackConfig) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=config.s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="clickstream-dev",
        aws_secret_access_key="clickstream-dev-secret",
    )


def consumed(checkpoints: Path, query: str, s3: Any) -> int:
    """Topic records a query has committed. A query that reads the lake's events batches
    (`lake_events_source`: offsets {"batch": N}) has read up to where lake batch N's input
    ended, which N's commit marker records."""
    commits = [int(p.name) for p in (checkpoints / query / "commits").glob("[0-9]*")]
    if not commits:
        return 0
    last = (checkpoints / query / "offsets" / str(max(commits))).read_text().splitlines()[-1]
    offsets = json.loads(last)
    if set(offsets) == {"batch"}:
        if offsets["batch"] < 0:
            return 0
        key = commit_marker_key("events", int(offsets["batch"]))
        offsets = read_commit_marker(s3, BUCKET, key).source_offsets or {}
    return sum(sum(parts.values()) for parts in offsets.values())


def empty_lake(s3: Any) -> None:
    """Every object of the bucket deleted: a job's run starts at lake batch 0 again, and its
    stateful queries read the lake's batches back, so none of an earlier run's may remain."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys[start : start + 1000]})


BARE = """
import sys, time, json
from stream_processor.config import Settings
from stream_processor.job import kafka_stream
from stream_processor.spark_setup import build_session
settings = Settings()
spark = build_session(settings)
total, target = 0, int(sys.argv[1])
def count(df, batch_id):
    global total
    total += df.count()
q = (kafka_stream(spark, settings).writeStream.queryName("bare")
     .option("checkpointLocation", settings.processor_checkpoint_location + "/bare")
     # Back to back, not on the job's trigger: with 200,000 rows per 5 s trigger the read
     # was capped at 40,000 rows/s by the clock, not by Spark or Kafka.
     .trigger(processingTime="0 seconds").foreachBatch(count).start())
t0 = time.monotonic()
durations = []
while total < target:
    time.sleep(0.2)
elapsed = time.monotonic() - t0
durations = [
    p["durationMs"]["triggerExecution"] / 1000 for p in q.recentProgress if p["numInputRows"]
]
q.stop()
print(json.dumps({"rows": total, "seconds": elapsed, "durations": durations}))
"""


def bare_rate(env: dict[str, str], count: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", BARE, str(count)],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the bare read failed:\n{out.stderr[-4000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def batch_durations(log_file: Path) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {q: [] for q in QUERIES}
    for line in log_file.read_text(errors="replace").splitlines():
        if '"batch finished"' not in line:
            continue
        record = json.loads(line)
        if record.get("rows") and record.get("query") in found:
            found[record["query"]].append(record["duration_ms"] / 1000)
    return found


def cores_of(master: str) -> int:
    """Task slots of a local master: local[N] -> N (local-cluster[n,c,m] -> n*c)."""
    inside = master[master.index("[") + 1 : master.rindex("]")]
    parts = [int(x) for x in inside.split(",")]
    return parts[0] * parts[1] if master.startswith("local-cluster") else parts[0]


def stop(job: subprocess.Popen[bytes]) -> None:
    if job.poll() is None:
        os.killpg(job.pid, signal.SIGTERM)
        try:
            job.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(30)


def capacity(
    env: dict[str, str], checkpoints: Path, log_file: Path, count: int, master: str, s3: Any
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """The bare read-and-count, then the full job from the earliest offset until every query
    has committed the whole topic, on one master; the job is left running."""
    empty_lake(s3)
    bare = bare_rate(env, count)
    bare_rate_s = bare["rows"] / bare["seconds"]
    print(
        f"[{master}] bare read+count: {bare['rows']} rows in {bare['seconds']:.1f}s = "
        f"{bare_rate_s:,.0f}/s",
        flush=True,
    )
    with log_file.open("wb") as log:
        job = subprocess.Popen(
            [sys.executable, "-m", "stream_processor"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    while '"streaming queries started"' not in log_file.read_text(errors="replace"):
        if job.poll() is not None:
            raise RuntimeError(log_file.read_text()[-3000:])
        time.sleep(0.2)
    started = time.monotonic()
    drained: dict[str, float] = {}
    while len(drained) < len(QUERIES):
        for q in QUERIES:
            if q not in drained and consumed(checkpoints, q, s3) >= count:
                drained[q] = time.monotonic() - started
        if job.poll() is not None:
            raise RuntimeError(log_file.read_text()[-3000:])
        time.sleep(0.5)
    full_s = max(drained.values())
    full_rate = count / full_s
    cores = cores_of(master)
    print(
        f"[{master}] full job: {count} events in {full_s:.1f}s = {full_rate:,.0f}/s "
        f"({full_rate / bare_rate_s:.0%} of bare, {full_rate / cores:,.0f}/s per core); "
        f"per query {drained}",
        flush=True,
    )
    durations = batch_durations(log_file)
    return job, {
        "cores": cores,
        "bare_rate": round(bare_rate_s),
        "bare_batch_s_p50": pct(bare["durations"], 0.5),
        "full_rate": round(full_rate),
        "full_rate_per_core": round(full_rate / cores),
        "ratio": round(full_rate / bare_rate_s, 3),
        "drained_s": {q: round(v, 1) for q, v in drained.items()},
        "batch_s_p50_p95": {
            q: (round(pct(v, 0.5), 2), round(pct(v, 0.95), 2), len(v)) for q, v in durations.items()
        },
    }


def scaling_ratio(scaling: dict[str, dict[str, Any]], masters: list[str]) -> float | None:
    """Full-job rate of the last master over the first (e.g. local[2] / local[1])."""
    if len(masters) < 2:
        return None
    faster, slower = scaling[masters[-1]]["full_rate"], scaling[masters[0]]["full_rate"]
    return round(float(faster) / float(slower), 2)


def driver_jvm(job: subprocess.Popen[bytes]) -> int | None:
    """The pid of the job's driver JVM: the Java process among the job's descendants."""
    parents: dict[int, int] = {}
    programs: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            programs[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0", 1)[0]
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    for pid, program in programs.items():
        ancestor = parents.get(pid)
        while ancestor and ancestor != job.pid:
            ancestor = parents.get(ancestor)
        if ancestor == job.pid and program.endswith(b"java"):
            return pid
    return None


def heap_after_gc_mb(pid: int) -> float | None:
    """The driver's used heap right after a full GC (its live set), in MB, by jcmd/jstat."""
    run = subprocess.run(["jcmd", str(pid), "GC.run"], capture_output=True, timeout=60)
    if run.returncode != 0:
        return None
    out = subprocess.run(["jstat", "-gc", str(pid)], capture_output=True, text=True, timeout=60)
    lines = out.stdout.split()
    half = len(lines) // 2
    if out.returncode != 0 or half == 0:
        return None
    gc = dict(zip(lines[:half], lines[half:], strict=True))
    used_kb = sum(float(gc[k]) for k in ("S0U", "S1U", "EU", "OU"))
    return round(used_kb / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--steady-seconds", type=int, default=60)
    parser.add_argument("--steady-rate", type=int, default=0)
    parser.add_argument("--max-offsets", type=int, default=200_000)
    # Each master in turn: the bare read and the full job over the same topic, in one run
    # (the steady-state phase then runs on the last one).
    parser.add_argument("--masters", default="local[1],local[2]")
    # Another source tree (`git archive <rev> services/stream-processor/src
    # libs/clickstream-common/src | tar -x -C DIR`): its job runs too, on each master, beside
    # this tree's (an A/B in one run).
    parser.add_argument("--baseline-src", default="")
    # Every N seconds of the steady phase, the driver's heap after a full GC (0: never).
    parser.add_argument("--heap-every", type=int, default=0)
    args = parser.parse_args()

    config = StackConfig.scratch("test-stacks", f"bench-processor-{os.getpid()}")
    state = config.state_dir
    stack = Stack(config, progress=lambda line: print(line, flush=True))
    job: subprocess.Popen[bytes] | None = None
    try:
        for name in ("kafka", "s3"):
            stack.components[name].start()
        events = Events()
        rate, largest = load_backlog(config.kafka_bootstrap, events, args.events)
        print(f"topic loaded: {args.events} events at {rate:,.0f}/s", flush=True)

        base_env = {**os.environ, **service_env(config, "stream-processor")}
        base_env["PROCESSOR_MAX_OFFSETS_PER_TRIGGER"] = str(args.max_offsets)
        # The byte bound caps a trigger at its bytes over the largest record the bus may carry
        # (56 KiB: 9,362 records), which would make the sessions query (30 s trigger) drain a
        # backlog by the clock. This topic's records are at most `largest` bytes: with that as
        # the largest record, the cap is --max-offsets, as in the runs before the bound.
        base_env["PROCESSOR_MAX_RECORD_BYTES"] = str(largest)
        base_env["PYTHONUNBUFFERED"] = "1"
        # local-cluster[...] starts executor JVMs whose Python workers must be this venv's
        # (local[N] runs them from the driver's).
        base_env["PYSPARK_PYTHON"] = sys.executable
        # Commas inside brackets belong to a master (local-cluster[2,1,2048]).
        masters = [m.strip() for m in re.split(r",(?![^\[]*\])", args.masters) if m.strip()]
        s3 = lake_client(config)
        scaling: dict[str, dict[str, Any]] = {}
        for index, master in enumerate(masters):
            if job is not None:
                stop(job)
            env = {**base_env, "PROCESSOR_SPARK_MASTER": master}
            # Each master starts from the earliest offset with checkpoints of its own; its
            # batch ids start at 0 again, so it overwrites the previous run's objects.
            checkpoints = state / f"checkpoints-{index}"
            env["PROCESSOR_CHECKPOINT_LOCATION"] = str(checkpoints)
            log_file = state / f"job-{index}.log"
            baseline: dict[str, Any] = {}
            if args.baseline_src:
                # The job of another source tree first (e.g. main's, exported with git
                # archive), on the same master and topic: its modules come first on the path.
                src = Path(args.baseline_src).resolve()
                path = f"{src}/services/stream-processor/src:{src}/libs/clickstream-common/src"
                old_env = {**env, "PYTHONPATH": path}
                old_env["PROCESSOR_CHECKPOINT_LOCATION"] = str(checkpoints) + "-baseline"
                old_job, baseline = capacity(
                    old_env,
                    Path(old_env["PROCESSOR_CHECKPOINT_LOCATION"]),
                    state / f"job-{index}-baseline.log",
                    args.events,
                    f"{master} baseline-src",
                    s3,
                )
                stop(old_job)
            job, result = capacity(env, checkpoints, log_file, args.events, master, s3)
            if baseline:
                result["baseline_src"] = baseline
            scaling[master] = result
        full_rate = scaling[masters[-1]]["full_rate"]
        capacity_durations = batch_durations(log_file)
        bare_rate_s = scaling[masters[-1]]["bare_rate"]
        assert job is not None

        # Steady state: produce "now" events at a fixed rate, watch lag and freshness.
        steady_rate = args.steady_rate or int(full_rate / 2)
        p = producer(config.kafka_bootstrap)
        sent = args.events
        lags: list[dict[str, int]] = []
        steady_start = datetime.now(UTC)
        t0 = time.monotonic()
        next_sample = t0
        jvm = driver_jvm(job) if args.heap_every else None
        heap: list[tuple[int, float | None]] = []
        next_heap = t0
        while time.monotonic() - t0 < args.steady_seconds:
            if jvm is not None and time.monotonic() >= next_heap:
                heap.append((round(time.monotonic() - t0), heap_after_gc_mb(jvm)))
                print(f"driver heap after GC at {heap[-1][0]} s: {heap[-1][1]} MB", flush=True)
                next_heap += args.heap_every
            due = int((time.monotonic() - t0) * steady_rate) + args.events
            while sent < due:
                now = datetime.now(UTC)
                produce(p, *events.make(now, now))
                sent += 1
            p.poll(0)
            if time.monotonic() >= next_sample:
                lags.append({q: sent - consumed(checkpoints, q, s3) for q in QUERIES})
                next_sample += 2
            time.sleep(0.005)
        p.flush(60)
        for _ in range(60):  # let the last batches commit
            if all(consumed(checkpoints, q, s3) >= sent for q in ("lake", "windows")):
                break
            time.sleep(1)
        event_fresh: list[float] = []
        window_fresh: list[float] = []
        for dataset, into in (("events", event_fresh), ("event_counts_minute", window_fresh)):
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=BUCKET, Prefix=f"processed/{dataset}/_commits/"
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    body = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
                    marker = CommitMarker.model_validate_json(body)
                    if marker.committed_at < steady_start + timedelta(seconds=5):
                        continue
                    if dataset != "events":
                        if marker.max_received_at:
                            into.append(
                                (marker.committed_at - marker.max_received_at).total_seconds()
                            )
                        continue
                    for item in marker.objects:
                        data = s3.get_object(Bucket=BUCKET, Key=item.key)["Body"].read()
                        received = pq.read_table(io.BytesIO(data), columns=["received_at"])
                        for r in received.column(0).to_pylist():
                            if r >= steady_start:
                                into.append((marker.committed_at - r).total_seconds())
        steady_durations = batch_durations(log_file)
        report = {
            "events": args.events,
            "scaling": scaling,
            "speedup": scaling_ratio(scaling, masters),
            "bare_rate": round(bare_rate_s),
            "full_rate": round(full_rate),
            "ratio": round(full_rate / bare_rate_s, 3),
            "capacity_batch_s": {
                q: (round(pct(v, 0.5), 2), round(pct(v, 0.95), 2), len(v))
                for q, v in capacity_durations.items()
            },
            "steady_rate": steady_rate,
            "steady_sent": sent - args.events,
            "lag_samples": lags,
            "all_batch_s_p50_p95": {
                q: (round(pct(v, 0.5), 2), round(pct(v, 0.95), 2))
                for q, v in steady_durations.items()
            },
            "event_freshness_s_p50_p95": (
                round(pct(event_fresh, 0.5), 2),
                round(pct(event_fresh, 0.95), 2),
                len(event_fresh),
            ),
            "window_freshness_s_p50_p95": (
                round(pct(window_fresh, 0.5), 2),
                round(pct(window_fresh, 0.95), 2),
                len(window_fresh),
            ),
            "driver_heap_after_gc_mb": heap,
            "loadavg": os.getloadavg(),
        }
        print(json.dumps(report, indent=1, default=str), flush=True)
    finally:
        if job is not None:
            stop(job)
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)
        if "local-cluster" in args.masters:
            # Its workers keep each executor's files in <pyspark>/work (Spark's standalone
            # default; a local cluster takes no other directory).
            shutil.rmtree(Path(pyspark.__file__).parent / "work", ignore_errors=True)


if __name__ == "__main__":
    main()
