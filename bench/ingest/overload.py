"""#20: past saturation, with and without admission control (INGEST_MAX_INFLIGHT_REQUESTS).

    uv run python bench/ingest/overload.py [--duration 10] [--load 1.5] [--connections 512]

One broker of its own and two one-worker collectors: one with the default bound, one with
the bound out of reach (what the collector did before #20). First the closed-loop peak of
50-event batches (32 connections) on the bounded one; then each collector, in turn, gets an
open loop at `--load` times that peak over `--connections` connections (latency from each
request's due time, so queueing shows). Reported: requests/s answered, the share answered 2xx
and 503, and p50/p99 of all answers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import WRITE_KEY, kafka_broker, load, make_bodies, start_server, summary  # noqa: E402

from clickstream_local.config import free_ports  # noqa: E402
from clickstream_local.supervisor import terminate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=1.5)
    parser.add_argument("--connections", type=int, default=512)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ingest-overload-"))
    bodies, _ = make_bodies(50, 400, 7)
    bodies_file = work / "bodies.json"
    bodies_file.write_text(json.dumps(bodies))
    with kafka_broker() as bootstrap:
        ports = dict(zip(("bounded", "unbounded"), free_ports(2), strict=True))
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "INGEST_HOST": "127.0.0.1",
            "INGEST_WRITE_KEYS": json.dumps({WRITE_KEY: "bench"}),
            "INGEST_WORKERS": "1",
            "LOG_LEVEL": "WARNING",
        }
        bounds = {"bounded": {}, "unbounded": {"INGEST_MAX_INFLIGHT_REQUESTS": "1000000"}}
        servers = {
            name: start_server(
                [sys.executable, "-m", "ingest_api"],
                env | {"INGEST_PORT": str(port)} | bounds[name],
                port,
                work / f"{name}.log",
            )
            for name, port in ports.items()
        }
        try:
            out = work / "out.json"
            peak = summary(
                load(ports["bounded"], bodies_file, out, 32, args.duration, write_key=WRITE_KEY),
                50,
            )
            rate = args.load * peak["requests_per_s"]
            print(f"closed-loop peak {peak['requests_per_s']:.0f} requests/s; open loop {rate:.0f}")
            print(
                f"\n| collector | requests/s answered | 2xx | 503 | p50 ms | p99 ms |  "
                f"(at {args.load:g}x peak)"
            )
            print("| --- | ---: | ---: | ---: | ---: | ---: |")
            for name, port in ports.items():
                result = load(
                    port, bodies_file, out, args.connections, args.duration, rate, WRITE_KEY
                )
                figures = summary(result, 50)
                statuses = result.get("statuses", {})
                answered = sum(statuses.values()) or 1
                ok = sum(n for s, n in statuses.items() if 200 <= int(s) < 300)
                print(
                    f"| {name} | {figures['requests_per_s']:,.0f} | {ok / answered:.0%} | "
                    f"{statuses.get('503', 0) / answered:.0%} | {figures['p50_ms']:.1f} | "
                    f"{figures['p99_ms']:.1f} |",
                    flush=True,
                )
        finally:
            for process in servers.values():
                terminate(process)


if __name__ == "__main__":
    main()
