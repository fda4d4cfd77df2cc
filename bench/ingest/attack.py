"""The collector's memory under an attack of large headers and slow clients.

    uv run python bench/ingest/attack.py [--connections 2000] [--json out.json]
        [--header-timeout 10] [--body-timeout 30] [--bootstrap HOST:PORT]

Starts a Kafka broker (unless --bootstrap names one) and `python -m ingest_api` (its
defaults, apart from the two timeouts when given), then runs each attack in turn and reports
the collector's resident memory (sampled every 50 ms from /proc) and what a well-behaved
client sending one event every 0.2 s got meanwhile:

- large headers: N connections each send a request line and headers just under
  INGEST_MAX_HEADER_BYTES and never finish them (held until the header timeout); a few
  more send headers over the limit (431);
- slowloris: N connections send one header line a second (408 at the header timeout);
- slow bodies: N connections send headers and most of a 1 MiB body, then stall (held until
  the body timeout, or 503 once INGEST_MAX_BUFFERED_BODY_BYTES is taken);
- connection flood: N + 1000 idle connections (those over INGEST_MAX_CONNECTIONS get 503).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from broker import kafka_broker  # noqa: E402

from clickstream_local.config import free_ports  # noqa: E402
from clickstream_local.supervisor import terminate  # noqa: E402

WRITE_KEY = "attack-key"
EVENT = (
    b'{"event_type":"page_view","timestamp":"%s","anonymous_id":"probe"}'
    % time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()).encode()
)


def rss_mib(pid: int) -> float:
    """Resident memory of the collector: its process and every descendant (the worker
    processes when there are several)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += map(int, (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


class Sampler:
    """The peak resident memory of a process while a scenario runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.05)

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


class Probe:
    """A well-behaved client: one event every 0.2 s, statuses and latencies noted."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {WRITE_KEY}", "Content-Type": "application/json"}
        while not self.stop.is_set():
            began = time.perf_counter()
            try:
                with httpx.Client(timeout=30) as client:  # a new connection each time
                    status = str(client.post(self.url, content=EVENT, headers=headers).status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            self.statuses[status] += 1
            self.latencies.append(time.perf_counter() - began)
            self.stop.wait(0.2)

    def __enter__(self) -> Probe:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies) or [float("nan")]
        return {
            "statuses": dict(self.statuses),
            "p50_ms": round(ordered[len(ordered) // 2] * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1),
        }


async def hold(port: int, payload: bytes, seconds: float, trickle: bytes = b"") -> str:
    """Open a connection, send `payload`, then `trickle` once a second; the first line of
    whatever the server answers (or how the connection ended)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        return f"connect failed: {type(exc).__name__}"
    try:
        writer.write(payload)
        await writer.drain()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = await asyncio.wait_for(reader.readline(), timeout=1)
            except TimeoutError:
                if trickle:
                    writer.write(trickle)
                    await writer.drain()
                continue
            return line.decode(errors="replace").strip() or "closed"
        return "still open"
    except OSError as exc:
        return f"reset: {type(exc).__name__}"
    finally:
        writer.close()


def head(size: int) -> bytes:
    """A request line and headers of about `size` bytes, without the blank line that ends
    them."""
    line = b"POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " + WRITE_KEY.encode()
    padding = max(0, size - len(line) - 40)
    return line + b"\r\nx-padding: " + b"p" * padding + b"\r\n"


Scenario = Callable[[int, int, float], Awaitable[Counter[str]]]


async def large_headers(port: int, n: int, seconds: float) -> Counter[str]:
    near_limit = [hold(port, head(31 * 1024), seconds) for _ in range(n)]
    over_limit = [hold(port, head(64 * 1024), seconds) for _ in range(20)]
    return Counter(await asyncio.gather(*near_limit, *over_limit))


async def slowloris(port: int, n: int, seconds: float) -> Counter[str]:
    start = b"POST /v1/events HTTP/1.1\r\nhost: x\r\n"
    tasks = [hold(port, start, seconds, trickle=b"x-slow: 1\r\n") for _ in range(n)]
    return Counter(await asyncio.gather(*tasks))


async def slow_bodies(port: int, n: int, seconds: float) -> Counter[str]:
    body_head = (
        b"POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer "
        + WRITE_KEY.encode()
        + b"\r\ncontent-type: application/json\r\ncontent-length: 1048576\r\n\r\n"
    )
    payload = body_head + b" " * (1024 * 1024 - 1024)  # all but the last KiB
    return Counter(await asyncio.gather(*(hold(port, payload, seconds) for _ in range(n))))


async def connection_flood(port: int, n: int, seconds: float) -> Counter[str]:
    return Counter(await asyncio.gather(*(hold(port, b"", seconds) for _ in range(n + 1000))))


SCENARIOS: dict[str, Scenario] = {
    "large headers": large_headers,
    "slowloris": slowloris,
    "slow bodies": slow_bodies,
    "connection flood": connection_flood,
}


def start_collector(bootstrap: str, port: int, env: dict[str, str], log: Path) -> Any:
    environment = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "INGEST_HOST": "127.0.0.1",
        "INGEST_PORT": str(port),
        "INGEST_WRITE_KEYS": json.dumps({WRITE_KEY: "attack"}),
        "LOG_LEVEL": "WARNING",
        **env,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ingest_api"], env=environment, stdout=out, stderr=out
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"collector exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("collector did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--header-timeout", type=float, default=None)
    parser.add_argument("--body-timeout", type=float, default=None)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--bootstrap", help="a running broker to use instead of a new one")
    args = parser.parse_args()
    env = {}
    if args.header_timeout:
        env["INGEST_HEADER_TIMEOUT_SECONDS"] = str(args.header_timeout)
    if args.body_timeout:
        env["INGEST_BODY_TIMEOUT_SECONDS"] = str(args.body_timeout)
    header_timeout = args.header_timeout or 10.0
    body_timeout = args.body_timeout or 30.0
    results: dict[str, Any] = {"connections": args.connections, "settings": env}
    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap or stack.enter_context(kafka_broker(progress=False))
        (port,) = free_ports(1)
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"attack-collector-{port}.log"
        process = start_collector(bootstrap, port, env, log)
        try:
            probe_url = f"http://127.0.0.1:{port}/v1/events"
            for _ in range(50):  # warm up: the first requests load what the rest reuse
                httpx.post(
                    probe_url, content=EVENT, headers={"Authorization": f"Bearer {WRITE_KEY}"}
                )
            results["baseline_mib"] = round(rss_mib(process.pid), 1)
            for name, scenario in SCENARIOS.items():
                seconds = (body_timeout if name == "slow bodies" else header_timeout) + 15
                with Sampler(process.pid) as sampler, Probe(probe_url) as probe:
                    outcomes = asyncio.run(scenario(port, args.connections, seconds))
                results[name] = {
                    "peak_mib": round(sampler.peak, 1),
                    "after_mib": round(rss_mib(process.pid), 1),
                    "attackers_got": dict(outcomes.most_common(6)),
                    "probe": probe.summary(),
                }
                print(name, json.dumps(results[name]), flush=True)
            results["collector_alive"] = process.poll() is None
        finally:
            terminate(process, timeout=15)
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
