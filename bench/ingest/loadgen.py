"""HTTP load generator (its own process): closed loop for peak throughput, open loop at a
fixed rate for latency. Keep-alive connections, pre-built requests, uvloop.

Latency in open-loop mode runs from each request's scheduled start, so a stalled server is
not hidden by the generator waiting for it (no coordinated omission).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import uvloop


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> int:
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


def build_requests(
    host: str, port: int, path: str, headers: str, bodies: list[bytes]
) -> list[bytes]:
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}"
            f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]


async def closed_loop(
    host: str, port: int, requests: list[bytes], connections: int, warmup: float, duration: float
) -> dict[str, object]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    # Answers completed in each second of the measured window: how steady the peak is.
    per_second = [0] * max(1, int(duration))
    start = time.perf_counter()
    measure_from, end = start + warmup, start + warmup + duration

    async def worker(offset: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        i = offset
        while (now := time.perf_counter()) < end:
            status = await _request(reader, writer, requests[i % len(requests)])
            i += connections
            done = time.perf_counter()
            if now >= measure_from:
                latencies.append(done - now)
                statuses[status] = statuses.get(status, 0) + 1
                second = int(done - measure_from)
                if second < len(per_second):
                    per_second[second] += 1
        writer.close()

    await asyncio.gather(*(worker(n) for n in range(connections)))
    return {
        "requests": len(latencies),
        "seconds": duration,
        "latencies": latencies,
        "statuses": statuses,
        "per_second": per_second,
    }


async def open_loop(
    host: str,
    port: int,
    requests: list[bytes],
    rate: float,
    connections: int,
    warmup: float,
    duration: float,
) -> dict[str, object]:
    """Request i is due at start + i/rate; each connection takes the next due request, waits
    for its time if it is early, and the latency counts from the due time, so queueing in
    the server (or too few connections) shows in the figures instead of slowing the rate."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    total = int(rate * (warmup + duration))
    start = time.perf_counter() + 0.2
    measure_from = start + warmup
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection(host, port)
        while next_index < total:
            index = next_index
            next_index += 1
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status = await _request(reader, writer, requests[index % len(requests)])
            if due >= measure_from:
                latencies.append(time.perf_counter() - due)
                statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return {
        "requests": len(latencies),
        "seconds": duration,
        "latencies": latencies,
        "statuses": statuses,
    }


def run_load(port: int, requests: list[bytes], args: argparse.Namespace) -> dict[str, object]:
    """The load the command line asks for, on 127.0.0.1: an open loop at `--rate` when it is
    set, else a closed loop of `--connections`; `--warmup` seconds not counted, then
    `--duration` seconds measured."""
    if args.rate:
        run = open_loop(
            "127.0.0.1",
            port,
            requests,
            args.rate,
            args.connections,
            args.warmup,
            args.duration,
        )
    else:
        run = closed_loop("127.0.0.1", port, requests, args.connections, args.warmup, args.duration)
    return uvloop.run(run)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bodies", type=Path, required=True, help="JSON list of request bodies")
    parser.add_argument("--write-key", default="")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop at this rate")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    bodies = [body.encode() for body in json.loads(args.bodies.read_text())]
    headers = f"Authorization: Bearer {args.write_key}\r\n" if args.write_key else ""
    requests = build_requests("127.0.0.1", args.port, "/v1/events", headers, bodies)
    result = run_load(args.port, requests, args)
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
