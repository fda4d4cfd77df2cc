"""ingest-api benchmark: the collector beside its two ceilings, in one run, on one machine.

    uv run python bench/ingest/run.py [--duration 10] [--rounds 3] [--pin] [--json out.json]

Starts a Kafka broker of its own, then measures, for batches of 50 events and for
single-event requests:
  - collector: `python -m ingest_api` (uvicorn process), real broker, acks=all;
  - bare:      the same server stack with an endpoint that parses the body and answers 202
               (the HTTP ceiling);
  - raw:       an aiokafka producer with the collector's settings sending the same events,
               the same number of batches in flight (the Kafka ceiling).
Peak throughput comes from a closed loop, in rounds with the order of the three sides rotated
(figures: medians; target ratios: median of the per-round ratios); latency from an open loop at
a fixed rate: at 80% of the collector's peak (the target's level) in rounds too, each beside
the bare endpoint at 80% of its own peak (a control: the tail this machine gives a server that
only parses JSON at the same share of its peak), and once at 50 and 65%. The
broker is warmed with produce traffic first. The load generator and the raw producer are
processes of their own. With --pin the measured side (collector, bare server, raw producer)
gets CPU 1 to itself and everything else shares CPU 0, as a collector pod with its own core
would run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from clickstream_local.config import free_ports
from clickstream_local.supervisor import terminate
from clickstream_simulator.generator import ClickstreamGenerator
from ingest_api.config import Settings

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from broker import kafka_broker  # noqa: E402

WRITE_KEY = "bench-key"
# Requests in flight per scenario (HTTP connections = raw producer batches in flight).
SHAPES = {"batch50": (50, 8), "single": (1, 32)}
SCENARIOS = ["bare", "collector", "raw_producer"]
# The latency target's load: this share of the peak.
TARGET_LEVEL = 0.8
# The sides measured over HTTP (the raw producer has no open loop).
HTTP_SIDES = ("collector", "bare")
# (shape, measured side, baseline side, metric, target share of the baseline)
TARGETS = [
    ("batch50", "collector", "raw_producer", "events_per_s", 0.5),
    ("single", "collector", "bare", "requests_per_s", 0.6),
]


def make_bodies(events_per_request: int, requests: int, seed: int) -> tuple[list[str], list[Any]]:
    now = datetime.now(UTC)
    events = ClickstreamGenerator(seed=seed).events_between(
        now, now + timedelta(hours=1), events_per_request * requests
    )
    batches = [
        events[i : i + events_per_request] for i in range(0, len(events), events_per_request)
    ]
    sent_at = now.isoformat()
    bodies = [orjson.dumps({"sent_at": sent_at, "events": b}).decode() for b in batches]
    return bodies, batches


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summary(result: dict[str, Any], events_per_request: int) -> dict[str, float]:
    latencies = result["latencies"]
    requests = result["requests"]
    events = result.get("events", requests * events_per_request)
    figures = {
        "requests_per_s": requests / result["seconds"],
        "events_per_s": events / result["seconds"],
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "non_2xx": sum(n for s, n in result.get("statuses", {}).items() if not 200 <= int(s) < 300),
    }
    per_second = result.get("per_second")
    if per_second and statistics.median(per_second) > 0:
        # A closed loop's slowest second against its median one: how far the capacity of the
        # moment falls below the peak an open loop's rate is derived from.
        figures["slowest_second"] = min(per_second) / statistics.median(per_second)
    return figures


@dataclass(frozen=True)
class Run:
    """One shape's closed-loop measurements: which side, on what, for how long."""

    bootstrap: str
    bare_port: int
    collector_port: int
    bodies: Path
    events: Path
    inflight: int
    duration: float
    linger_ms: int
    out: Path
    # With --pin: the CPUs of the measured side (collector, bare server or raw producer).
    side_cpus: frozenset[int] | None = None

    def measure(self, name: str) -> dict[str, Any]:
        if name == "raw_producer":
            raw_producer(
                self.bootstrap,
                self.events,
                self.inflight,
                self.duration,
                self.linger_ms,
                self.out,
                self.side_cpus,
            )
            result: dict[str, Any] = json.loads(self.out.read_text())
            return result
        port, key = self.endpoint(name)
        return load(port, self.bodies, self.out, self.inflight, self.duration, write_key=key)

    def open_loop(self, name: str, rate: float) -> dict[str, Any]:
        """An HTTP side at a fixed rate, with 4x the connections of its closed loop (the
        generator never runs out of connections, so a slow server cannot slow the rate)."""
        port, key = self.endpoint(name)
        return load(port, self.bodies, self.out, self.inflight * 4, self.duration, rate, key)

    def endpoint(self, name: str) -> tuple[int, str]:
        """The port and write key of an HTTP side."""
        return (self.bare_port, "") if name == "bare" else (self.collector_port, WRITE_KEY)


def median_figures(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


def ratios(
    rounds: list[dict[str, dict[str, float]]], side: str, base: str, metric: str
) -> list[float]:
    return [r[side][metric] / r[base][metric] for r in rounds]


def on_cpus(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    """A preexec_fn that pins the child (and its threads) to `cpus`; None leaves it free."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def start_server(
    command: list[str],
    env: dict[str, str],
    port: int,
    log: Path,
    cpus: frozenset[int] | None = None,
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=on_cpus(cpus)
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command} exited: {log.read_text()[-2000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{command} did not start")


def load(
    port: int,
    bodies: Path,
    out: Path,
    connections: int,
    duration: float,
    rate: float = 0.0,
    write_key: str = "",
) -> dict[str, Any]:
    command = [
        sys.executable,
        str(HERE / "loadgen.py"),
        "--port",
        str(port),
        "--bodies",
        str(bodies),
        "--connections",
        str(connections),
        "--duration",
        str(duration),
        "--out",
        str(out),
    ]
    if rate:
        command += ["--rate", str(rate)]
    if write_key:
        command += ["--write-key", write_key]
    subprocess.run(command, check=True)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def raw_producer(
    bootstrap: str,
    events: Path,
    inflight: int,
    duration: float,
    linger_ms: int,
    out: Path,
    cpus: frozenset[int] | None = None,
) -> None:
    command = [sys.executable, str(HERE / "raw_producer.py"), "--bootstrap", bootstrap]
    command += ["--events", str(events), "--concurrency", str(inflight)]
    command += ["--duration", str(duration), "--linger-ms", str(linger_ms), "--out", str(out)]
    subprocess.run(command, check=True, preexec_fn=on_cpus(cpus))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="write every figure here too")
    parser.add_argument("--rounds", type=int, default=3, help="closed-loop rounds per shape")
    parser.add_argument(
        "--lower-levels",
        type=lambda text: [float(v) for v in text.split(",") if v],
        default=[0.5, 0.65],
        help="shares of the collector's peak to measure latency at once each, besides the "
        "target's 80%% (measured in rounds)",
    )
    parser.add_argument(
        "--linger-ms",
        type=int,
        default=Settings.model_fields["ingest_kafka_linger_ms"].default,
        help="producer linger for the collector and the raw producer (the collector's default)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="measured side on CPU 1; broker, load generator and this script on CPU 0",
    )
    args = parser.parse_args()
    side_cpus = None
    if args.pin:
        # Inherited by everything started from here on (broker, load generator).
        os.sched_setaffinity(0, {0})
        side_cpus = frozenset({1})
    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    results: dict[str, dict[str, Any]] = {}
    with kafka_broker() as bootstrap:
        collector_port, bare_port = free_ports(2)
        base_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        collector = start_server(
            [sys.executable, "-m", "ingest_api"],
            base_env
            | {
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "INGEST_HOST": "127.0.0.1",
                "INGEST_PORT": str(collector_port),
                "INGEST_WRITE_KEYS": json.dumps({WRITE_KEY: "bench"}),
                "INGEST_KAFKA_LINGER_MS": str(args.linger_ms),
            },
            collector_port,
            work / "collector.log",
            side_cpus,
        )
        bare = start_server(
            [sys.executable, str(HERE / "bare_app.py")],
            base_env | {"INGEST_PORT": str(bare_port)},
            bare_port,
            work / "bare.log",
            side_cpus,
        )
        try:
            # A fresh broker JVM spends its first seconds compiling (on the same 2 cores):
            # warm it with produce traffic first, or whichever side runs first pays for it.
            _, warm_batches = make_bodies(50, 400, 3)
            warm_events = work / "warm-events.json"
            warm_events.write_text(json.dumps(warm_batches))
            raw_producer(bootstrap, warm_events, 8, 15, args.linger_ms, work / "warm.json")
            for shape, (per_request, inflight) in SHAPES.items():
                bodies, batches = make_bodies(per_request, 2000 if per_request == 1 else 400, 7)
                bodies_file, events_file = work / f"{shape}.json", work / f"{shape}-events.json"
                bodies_file.write_text(json.dumps(bodies))
                events_file.write_text(json.dumps(batches))
                out = work / "out.json"

                run = Run(
                    bootstrap=bootstrap,
                    bare_port=bare_port,
                    collector_port=collector_port,
                    bodies=bodies_file,
                    events=events_file,
                    inflight=inflight,
                    duration=args.duration,
                    linger_ms=args.linger_ms,
                    out=out,
                    side_cpus=side_cpus,
                )

                # Closed-loop peaks in rounds, each round in a rotated order: the neighbours
                # on the 2 cores change from second to second, so one round is one sample.
                rounds: list[dict[str, dict[str, float]]] = []
                for number in range(args.rounds):
                    order = SCENARIOS[number % 3 :] + SCENARIOS[: number % 3]
                    rounds.append({name: summary(run.measure(name), per_request) for name in order})
                figures = {name: median_figures([r[name] for r in rounds]) for name in SCENARIOS}
                # Open loops at fixed shares of those peaks. The target's level in rounds, like
                # the peaks, the collector beside the bare endpoint at the same share of its
                # own peak; the lower levels once each, to show where the tail starts to grow.
                latency_rounds: list[dict[str, dict[str, float]]] = []
                for number in range(args.rounds):
                    sides = HTTP_SIDES[:: 1 if number % 2 == 0 else -1]
                    latency_rounds.append(
                        {
                            name: summary(
                                run.open_loop(name, TARGET_LEVEL * figures[name]["requests_per_s"]),
                                per_request,
                            )
                            for name in sides
                        }
                    )
                for name in HTTP_SIDES:
                    figures[f"{name}_at_{TARGET_LEVEL:.0%}"] = median_figures(
                        [r[name] for r in latency_rounds]
                    )
                for level in args.lower_levels:
                    rate = level * figures["collector"]["requests_per_s"]
                    figures[f"collector_at_{level:.0%}"] = summary(
                        run.open_loop("collector", rate), per_request
                    )
                results[shape] = {
                    "figures": figures,
                    "rounds": rounds,
                    "latency_rounds": latency_rounds,
                }
                print(f"{shape}: {json.dumps(results[shape], indent=1)}", flush=True)
        finally:
            terminate(collector)
            terminate(bare)
    report(results, args.duration)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def report(results: dict[str, dict[str, Any]], duration: float) -> None:
    print(
        f"\n| scenario (median of rounds) | events/s | requests/s | p50 ms | p99 ms | non-2xx |"
        f"  ({duration:g} s each)"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for shape, result in results.items():
        for name, f in result["figures"].items():
            print(
                f"| {shape} {name} | {f['events_per_s']:,.0f} | {f['requests_per_s']:,.0f} | "
                f"{f['p50_ms']:.1f} | {f['p99_ms']:.1f} | {f['non_2xx']:.0f} |"
            )
    print()
    for shape, side, base, metric, target in TARGETS:
        per_round = ratios(results[shape]["rounds"], side, base, metric)
        ratio = statistics.median(per_round)
        rounds = ", ".join(f"{r:.0%}" for r in per_round)
        print(
            f"- {shape} {side} {metric} vs {base} (target >= {target:.0%}): median {ratio:.0%} "
            f"(rounds {rounds}) {'ok' if ratio >= target else 'BELOW TARGET'}"
        )
    for shape in SHAPES:
        latency_rounds = results[shape]["latency_rounds"]
        collector, bare = ([r[name]["p99_ms"] for r in latency_rounds] for name in HTTP_SIDES)
        p99 = statistics.median(collector)
        print(
            f"- {shape} p99 at {TARGET_LEVEL:.0%} of peak (target < 50 ms): median {p99:.1f} ms "
            f"(rounds {', '.join(f'{v:.0f}' for v in collector)}) "
            f"{'ok' if p99 < 50 else 'ABOVE TARGET'}; control, the bare endpoint at "
            f"{TARGET_LEVEL:.0%} of its own peak: median {statistics.median(bare):.1f} ms "
            f"(rounds {', '.join(f'{v:.0f}' for v in bare)})"
        )
    for shape, result in results.items():
        steadiness = ", ".join(
            f"{name} {statistics.median(r[name]['slowest_second'] for r in result['rounds']):.0%}"
            for name in HTTP_SIDES
        )
        print(f"- {shape} closed loops, slowest second against the median second: {steadiness}")


if __name__ == "__main__":
    main()
