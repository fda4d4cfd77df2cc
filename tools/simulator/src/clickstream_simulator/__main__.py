"""CLI: `python -m clickstream_simulator --url http://127.0.0.1:18080 --rate 200 --duration 60`."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from clickstream_common.settings import EVENTS_TOPIC
from clickstream_simulator.generator import ClickstreamGenerator
from clickstream_simulator.scenario import Incident, LiveIncidents, parse_incident
from clickstream_simulator.sender import DeliveryStats, HttpSender, batched, send_to_kafka


def _progress(stats: DeliveryStats, total: str) -> None:
    line = (
        f"sent {stats.sent}{total} events | accepted {stats.accepted} | "
        f"rejected {stats.rejected} | retries {stats.retries} | {stats.rate:,.0f} ev/s"
    )
    end = "\r" if sys.stderr.isatty() else "\n"
    print(line, end=end, file=sys.stderr, flush=True)


def _wall_clock() -> Iterator[datetime]:
    while True:
        yield datetime.now(UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clickstream-simulator", description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:18080", help="ingest API base URL")
    parser.add_argument("--write-key", default="dev-write-key")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0, help="events per second (live)")
    parser.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help="seconds to run in live mode; 0 runs until Ctrl-C",
    )
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument(
        "--backfill-minutes",
        type=int,
        default=0,
        help="instead of live traffic, send --count events stamped over the "
        "last N minutes, as fast as possible",
    )
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--kafka", metavar="BOOTSTRAP", help="write straight to Kafka instead")
    parser.add_argument("--topic", default=EVENTS_TOPIC)
    parser.add_argument(
        "--taste",
        type=float,
        default=0.7,
        help="share of product views from each shopper's favourite categories (0: uniform)",
    )
    parser.add_argument(
        "--incident",
        action="append",
        default=[],
        metavar="KIND@START+MINUTES[xINTENSITY][:TYPE]",
        help="live mode: inject an incident, minutes from the start, e.g. "
        "checkout_outage@2+5, bot_storm@1+3x2, viral_product@1+3, tracking_break@2+5:add_to_cart",
    )
    args = parser.parse_args(argv)

    generator = ClickstreamGenerator(
        seed=args.seed, users=args.users, products=args.products, taste=args.taste
    )
    started_at = datetime.now(UTC)
    incidents: list[Incident] = [parse_incident(text, started_at) for text in args.incident]
    stats = DeliveryStats()
    if args.backfill_minutes:
        end = datetime.now(UTC)
        events = generator.events_between(
            end - timedelta(minutes=args.backfill_minutes), end, args.count
        )
        total = f"/{len(events)}"
        if args.kafka:
            asyncio.run(
                send_to_kafka(events, args.kafka, args.topic, stats, lambda s: _progress(s, total))
            )
        else:
            sender = HttpSender(args.url, args.write_key)
            try:
                for batch in batched(events, args.batch_size):
                    sender.send(batch, stats)
                    _progress(stats, total)
            finally:
                sender.close()
        print(file=sys.stderr)
        return 0

    if args.kafka:
        limit = int(args.rate * args.duration) if args.duration else None
        stream = itertools.islice(generator.live(_wall_clock()), limit)
        asyncio.run(
            send_to_kafka(stream, args.kafka, args.topic, stats, lambda s: _progress(s, ""))
        )
        return 0

    # Live mode over HTTP: pace the generator to the target rate, send in batches.
    sender = HttpSender(args.url, args.write_key)
    live = generator.live(_wall_clock())
    injected = LiveIncidents(generator, incidents, seed=args.seed)
    started = time.monotonic()
    produced = 0
    last_report = 0.0
    try:
        while not args.duration or time.monotonic() - started < args.duration:
            elapsed = time.monotonic() - started
            due = int(args.rate * elapsed) - produced
            if due <= 0:
                time.sleep(min(0.05, 1 / max(args.rate, 1)))
                continue
            chunk = injected.apply(list(itertools.islice(live, due)))
            for batch in batched(chunk, args.batch_size):
                sender.send(batch, stats)
            produced += due
            stats.accepted_events.clear()  # live mode keeps no history
            if elapsed - last_report >= 1:
                _progress(stats, "")
                last_report = elapsed
    except KeyboardInterrupt:
        pass
    finally:
        sender.close()
        _progress(stats, "")
        print(file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
