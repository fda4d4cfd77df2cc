"""Recommender benchmark: p50/p99 latency of the API at a fixed rate (open loop), beside the
bare HTTP stack at the same rate, in one run; plus the offline quality (hit-rate@10).

    flock /work/coord/bench.lock uv run python bench/recommender/run.py \
        [--rate 500] [--duration 20] [--json .state/bench/recommender.json]

A Redis of its own is filled with simulated shoppers through the service's own update script
(the quality evaluation's training hours); then `python -m recommender` (API only, no
consumer) answers a mix of the three endpoints: users (60%, users with and without history),
similar (25%), trending (15%), all with the read key. The baseline is the same server stack
(uvicorn, uvloop, httptools, FastAPI) answering a fixed JSON body. Latency counts from each
request's scheduled time (no coordinated omission); the load generator is a process of its own.
The tables are printed; `--json` also writes them with the time and the machine's load average
at the start and the end (a shared machine shows there).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from clickstream_local.alerting import Redis
from clickstream_local.config import StackConfig, free_ports
from clickstream_local.supervisor import Supervisor, terminate, wait_until
from recommender.quality import evaluate

HERE = Path(__file__).resolve().parent
LOADGEN = HERE / "loadgen.py"
READ_KEY = "bench-read-key"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def requests_mix(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    paths = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.6:
            paths.append(f"/v1/recommendations/users/U{rng.randrange(0, 3000):06d}")
        elif roll < 0.85:
            paths.append(f"/v1/recommendations/products/P{rng.randrange(0, 300):05d}/similar")
        else:
            paths.append("/v1/recommendations/trending")
    return paths


def serve(argv: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, 60, f"server on {port}")
    return proc


def measure(
    port: int, paths: list[str], rate: float, duration: float, out: Path
) -> dict[str, float]:
    paths_file = out.with_suffix(".paths.json")
    paths_file.write_text(json.dumps(paths))
    subprocess.run(
        [
            sys.executable,
            str(LOADGEN),
            "--port",
            str(port),
            "--paths",
            str(paths_file),
            "--key",
            READ_KEY,
            "--rate",
            str(rate),
            "--duration",
            str(duration),
            "--out",
            str(out),
        ],
        check=True,
    )
    result = json.loads(out.read_text())
    latencies = result["latencies"]
    return {
        "requests": len(latencies),
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "non_200": sum(v for k, v in result["statuses"].items() if k != "200"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_before = os.getloadavg()
    config = StackConfig.scratch("bench", f"recommender-{uuid.uuid4().hex[:6]}")
    redis_part = Redis(config, Supervisor(config.state_dir))
    redis_part.start()
    redis_url = f"redis://127.0.0.1:{config.redis_port}/0"
    servers: list[subprocess.Popen[bytes]] = []
    try:
        quality = asyncio.run(evaluate(redis_url, seed=1, keep_state="bench:"))
        print(
            f"quality: {quality.users} users, hit-rate@10 personalised "
            f"{quality.hit_rate_personalized:.3f} vs popularity {quality.hit_rate_popularity:.3f}",
            flush=True,
        )
        api_port, bare_port = free_ports(2)
        env = dict(os.environ) | {
            "RECOMMENDER_REDIS_URL": redis_url,
            "RECOMMENDER_KEY_PREFIX": "bench:",
            "RECOMMENDER_READ_KEYS": json.dumps([READ_KEY]),
            "RECOMMENDER_CONSUME": "false",
            "RECOMMENDER_HOST": "127.0.0.1",
            "RECOMMENDER_PORT": str(api_port),
            "LOG_LEVEL": "WARNING",
        }
        servers.append(serve([sys.executable, "-m", "recommender"], env, api_port))
        servers.append(
            serve(
                [sys.executable, str(HERE / "bare_app.py")],
                dict(os.environ) | {"BARE_PORT": str(bare_port)},
                bare_port,
            )
        )
        paths = requests_mix(5000)
        with tempfile.TemporaryDirectory() as tmp:
            results = {}
            for name, port in (("bare", bare_port), ("recommender", api_port)):
                results[name] = measure(port, paths, args.rate, args.duration, Path(tmp) / name)
        print(f"\nopen loop at {args.rate:.0f} req/s for {args.duration:.0f} s")
        print("| side | requests | p50 ms | p99 ms | max ms | non-200 |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, r in results.items():
            print(
                f"| {name} | {r['requests']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                f"{r['max_ms']:.1f} | {r['non_200']:.0f} |"
            )
        record = {
            "started": started,
            "rate": args.rate,
            "duration_s": args.duration,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "quality": quality.__dict__,
            "latency": results,
        }
        print(json.dumps(record))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(record, indent=2))
    finally:
        for server in servers:
            terminate(server)
        redis_part.stop()
        shutil.rmtree(config.state_dir, ignore_errors=True)
        time.sleep(0)


if __name__ == "__main__":
    main()
