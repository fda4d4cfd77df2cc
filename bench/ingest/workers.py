"""#20: the collector with one worker process against the default worker count, at saturation.

    uv run python bench/ingest/workers.py [--duration 10] [--rounds 2] [--workers N]
        [--json out.json]

One broker of its own; in one run, for 50-event batches and for single events, closed loops
of 32 connections (the issue's saturation) against:
  - collector_1: `python -m ingest_api` with INGEST_WORKERS=1 (the collector before #20);
  - collector_N: the default worker count (INGEST_WORKERS unset: the CPU limit or CPUs);
  - bare_N:      the bare endpoint (bare_app.py) with N uvicorn workers (the HTTP ceiling at
                 the same worker count);
  - raw_producer: one aiokafka producer with the collector's settings, 32 batches in flight
                 (the Kafka ceiling, batches only).
Rounds rotate the order. Reported per side: events/s, requests/s, p50, p99, non-2xx, and the
server's CPU-seconds (its process and its workers, from /proc) with events per CPU-second.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import (  # noqa: E402
    WRITE_KEY,
    kafka_broker,
    load,
    make_bodies,
    raw_producer,
    start_server,
    summary,
)

from clickstream_local.config import free_ports  # noqa: E402
from clickstream_local.supervisor import terminate  # noqa: E402
from ingest_api.workers import default_worker_count  # noqa: E402

CONNECTIONS = 32
SHAPES = {"batch50": 50, "single": 1}
TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its living descendants."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += map(int, (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=default_worker_count())
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    workers = args.workers
    work = Path(tempfile.mkdtemp(prefix="ingest-workers-bench-"))
    sides = ["collector_1", f"collector_{workers}", f"bare_{workers}", "raw_producer"]
    results: dict[str, Any] = {"workers": workers, "cpus": os.cpu_count(), "shapes": {}}
    with kafka_broker() as bootstrap:
        one_port, many_port, bare_port = free_ports(3)
        base = {**os.environ, "PYTHONUNBUFFERED": "1"}
        collector_env = base | {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "INGEST_HOST": "127.0.0.1",
            "INGEST_WRITE_KEYS": json.dumps({WRITE_KEY: "bench"}),
            "LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "ingest_api"]
        servers = {
            "collector_1": (
                start_server(
                    command,
                    collector_env | {"INGEST_PORT": str(one_port), "INGEST_WORKERS": "1"},
                    one_port,
                    work / "collector-1.log",
                ),
                one_port,
            ),
            f"collector_{workers}": (
                start_server(
                    command,
                    collector_env | {"INGEST_PORT": str(many_port), "INGEST_WORKERS": str(workers)},
                    many_port,
                    work / "collector-n.log",
                ),
                many_port,
            ),
            f"bare_{workers}": (
                start_server(
                    [sys.executable, str(HERE / "bare_app.py")],
                    base | {"INGEST_PORT": str(bare_port), "BARE_WORKERS": str(workers)},
                    bare_port,
                    work / "bare.log",
                ),
                bare_port,
            ),
        }
        try:
            _, warm = make_bodies(50, 400, 3)
            (work / "warm.json").write_text(json.dumps(warm))
            raw_producer(bootstrap, work / "warm.json", 8, 15, 0, work / "warm-out.json")
            for shape, per_request in SHAPES.items():
                bodies, batches = make_bodies(per_request, 2000 if per_request == 1 else 400, 7)
                bodies_file, events_file = work / f"{shape}.json", work / f"{shape}-events.json"
                bodies_file.write_text(json.dumps(bodies))
                events_file.write_text(json.dumps(batches))
                rounds: list[dict[str, dict[str, float]]] = []
                for number in range(args.rounds):
                    shift = number % len(sides)
                    order = sides[shift:] + sides[:shift]
                    measured: dict[str, dict[str, float]] = {}
                    for side in order:
                        if side == "raw_producer" and per_request == 1:
                            continue  # the HTTP ceiling is the baseline of single events
                        out = work / "out.json"
                        if side == "raw_producer":
                            before = resource.getrusage(resource.RUSAGE_CHILDREN)
                            raw_producer(bootstrap, events_file, CONNECTIONS, args.duration, 0, out)
                            after = resource.getrusage(resource.RUSAGE_CHILDREN)
                            cpu = (after.ru_utime + after.ru_stime) - (
                                before.ru_utime + before.ru_stime
                            )
                            result = json.loads(out.read_text())
                        else:
                            process, port = servers[side]
                            key = "" if side.startswith("bare") else WRITE_KEY
                            start_cpu = tree_cpu_seconds(process.pid)
                            result = load(
                                port, bodies_file, out, CONNECTIONS, args.duration, write_key=key
                            )
                            # The load generator's warm-up is included: CPU per event is
                            # computed on the measured window's share of it.
                            cpu = tree_cpu_seconds(process.pid) - start_cpu
                        figures = summary(result, per_request)
                        window = result["seconds"] + result.get("warmup", 2.0)
                        figures["cpu_seconds_per_s"] = cpu / window
                        figures["events_per_cpu_s"] = (
                            figures["events_per_s"] / figures["cpu_seconds_per_s"]
                            if cpu
                            else float("nan")
                        )
                        measured[side] = figures
                    rounds.append(measured)
                median = {
                    side: {
                        metric: statistics.median(r[side][metric] for r in rounds)
                        for metric in rounds[0][side]
                    }
                    for side in rounds[0]
                }
                results["shapes"][shape] = {"median": median, "rounds": rounds}
                print(f"{shape}: {json.dumps(median, indent=1)}", flush=True)
        finally:
            for process, _ in servers.values():
                terminate(process)
    report(results, args.duration)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def report(results: dict[str, Any], duration: float) -> None:
    print(
        f"\n{CONNECTIONS} connections, closed loop, {duration:g} s per side and round, "
        f"median of rounds; {results['workers']} workers on {results['cpus']} CPUs"
    )
    print(
        "| shape | side | events/s | requests/s | p50 ms | p99 ms | non-2xx | CPU/s "
        "| events/CPU-s |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for shape, result in results["shapes"].items():
        for side, f in result["median"].items():
            print(
                f"| {shape} | {side} | {f['events_per_s']:,.0f} | {f['requests_per_s']:,.0f} | "
                f"{f['p50_ms']:.1f} | {f['p99_ms']:.1f} | {f['non_2xx']:.0f} | "
                f"{f['cpu_seconds_per_s']:.2f} | {f['events_per_cpu_s']:,.0f} |"
            )


if __name__ == "__main__":
    main()
