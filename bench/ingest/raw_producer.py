"""The Kafka ceiling (its own process): aiokafka with the collector's producer settings,
sending the same events, `concurrency` batches in flight, each awaited like a request."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import orjson
import uvloop
from aiokafka import AIOKafkaProducer

from clickstream_common.settings import EVENTS_TOPIC


async def run(args: argparse.Namespace) -> dict[str, object]:
    batches = [
        [(e.get("user_id") or e["anonymous_id"]).encode() for e in batch]
        for batch in json.loads(args.events.read_text())
    ]
    events = json.loads(args.events.read_text())
    payloads = [
        [(key, orjson.dumps(e)) for key, e in zip(keys, batch, strict=True)]
        for keys, batch in zip(batches, events, strict=True)
    ]
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=args.linger_ms,
        max_batch_size=256 * 1024,
        client_id="bench-raw",
    )
    await producer.start()
    latencies: list[float] = []
    events_sent = 0
    start = time.perf_counter()
    measure_from, end = start + args.warmup, start + args.warmup + args.duration

    async def worker(offset: int) -> None:
        nonlocal events_sent
        i = offset
        while (now := time.perf_counter()) < end:
            batch = payloads[i % len(payloads)]
            i += args.concurrency
            futures = [await producer.send(args.topic, value, key=key) for key, value in batch]
            await asyncio.gather(*futures)
            if now >= measure_from:
                latencies.append(time.perf_counter() - now)
                events_sent += len(batch)

    try:
        await asyncio.gather(*(worker(n) for n in range(args.concurrency)))
    finally:
        await producer.stop()
    return {
        "requests": len(latencies),
        "events": events_sent,
        "seconds": args.duration,
        "latencies": latencies,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", default=EVENTS_TOPIC)
    parser.add_argument("--events", type=Path, required=True, help="JSON list of event batches")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--linger-ms", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.write_text(json.dumps(uvloop.run(run(args))))


if __name__ == "__main__":
    main()
