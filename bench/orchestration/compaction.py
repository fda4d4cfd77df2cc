"""How many objects an hour of the lake holds, before and after compaction.

    uv run python bench/orchestration/compaction.py [--rate 100] [--minutes 10]

Starts a scratch stack (Kafka, versitygw, PostgreSQL, the streaming job with its 2 s
trigger, the loader), sends simulated shoppers straight to Kafka at `--rate` events per
second for `--minutes`, stamped with the current time (so the stream writes what it writes
in production: one object per data set and micro-batch), waits until the loader has every
committed batch, and then compacts the hours written with `orchestration.compaction` (the
function the daily DAG's tasks call; objects of any age, no wait for the correction pass).
It prints, per zone, the live objects and bytes before and after, and the objects an hour of
such traffic leaves before and after (a markdown table), and checks that every zone's rows
(or raw records) are the same before and after.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from clickstream_local.config import StackConfig  # noqa: E402
from clickstream_local.stack import Stack  # noqa: E402
from orchestration.compaction import compact_zone  # noqa: E402
from orchestration.lakefiles import ZONES, read_hour  # noqa: E402
from orchestration.settings import Settings  # noqa: E402
from tests.processor.streamdata import Lake, Sender, shopper_events  # noqa: E402


def zone_content(s3: Any, bucket: str, zone_name: str, hours: list[datetime]) -> Counter[Any]:
    """Every row (Parquet) or record (gzip lines) of the zone's live objects, as a multiset."""
    zone = ZONES[zone_name]
    content: Counter[Any] = Counter()
    for hour in hours:
        for obj in read_hour(s3, bucket, zone, hour):
            body = s3.get_object(Bucket=bucket, Key=obj.key)["Body"].read()
            if zone.processed:
                rows = pq.read_table(io.BytesIO(body)).to_pylist()
                content.update(tuple(sorted((k, str(v)) for k, v in r.items())) for r in rows)
            else:
                content.update(line for line in gzip.decompress(body).split(b"\n") if line)
    return content


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of traffic")
    args = parser.parse_args()

    config = StackConfig.scratch("bench", f"compaction-{int(time.time())}")
    stack = Stack(config, progress=lambda line: print(line, flush=True))
    try:
        stack.start(platform=True, services=False)
        for name in ("stream-processor", "warehouse-loader"):
            stack.components[name].launch()
        for name in ("stream-processor", "warehouse-loader"):
            stack.components[name].wait_ready()
        info = stack.connection_info()
        sender = Sender(info.kafka_bootstrap)
        began = datetime.now(UTC)
        deadline = time.monotonic() + args.minutes * 60
        sent = 0
        seed = 0
        while time.monotonic() < deadline:
            second = datetime.now(UTC)
            batch = shopper_events(seed, second - timedelta(seconds=1), 1 / 60, int(args.rate))
            sender.send(batch)
            sent += len(batch)
            seed += 1
            time.sleep(max(0.0, 1.0 - (datetime.now(UTC) - second).total_seconds()))
        print(f"sent {sent} events in {args.minutes:g} minutes", flush=True)

        s3 = Lake(info).s3

        def markers() -> set[str]:
            keys: set[str] = set()
            for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=info.s3_bucket, Prefix="processed/"
            ):
                keys |= {o["Key"] for o in page.get("Contents", []) if "/_commits/" in o["Key"]}
            return keys

        def events_in_lake() -> int:
            return sum(
                int(o["Size"] > 0)
                for page in s3.get_paginator("list_objects_v2").paginate(
                    Bucket=info.s3_bucket, Prefix="processed/events/"
                )
                for o in page.get("Contents", [])
            )

        # The stream may still be catching up: wait until it writes no new events object for
        # 20 s, then stop it, so the lake holds still while it is compacted and compared.
        seen, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < 20:
            now_seen = events_in_lake()
            if now_seen != seen:
                seen, quiet_since = now_seen, time.monotonic()
            time.sleep(2)
        stack.components["stream-processor"].stop()

        with psycopg.connect(info.warehouse_dsn) as conn:
            for _ in range(600):
                ledger = {
                    r[0] for r in conn.execute("SELECT object_key FROM analytics.load_ledger")
                }
                if markers() <= ledger:
                    break
                time.sleep(2)
            else:
                raise SystemExit("the loader did not load every committed batch in 20 minutes")

        first = began.replace(minute=0, second=0, microsecond=0)
        now = datetime.now(UTC)
        hours = [
            first + timedelta(hours=k) for k in range(-1, 3) if first + timedelta(hours=k) < now
        ]
        settings = Settings(
            s3_bucket=info.s3_bucket,
            compaction_min_age_seconds=0,
            compaction_wait_for_correction=False,
        )
        traffic_hours = (now - began).total_seconds() / 3600
        header = ("zone", "hours", "objects before", "after", "KiB before", "after", "per hour")
        print("\n| " + " | ".join(header) + " |\n|" + " --- |" * len(header))
        with psycopg.connect(info.warehouse_dsn) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            for name, zone in ZONES.items():
                before = zone_content(s3, info.s3_bucket, name, hours)
                report = compact_zone(s3, info.s3_bucket, zone, hours, settings, conn)
                after = zone_content(s3, info.s3_bucket, name, hours)
                assert before == after, f"{name}: content changed"
                touched = sum(1 for h in report.hours if h.objects_before)
                row = (
                    name,
                    touched,
                    report.objects_before,
                    report.objects_after,
                    round(report.bytes_before / 1024),
                    round(report.bytes_after / 1024),
                    f"{report.objects_before / traffic_hours:.0f} -> "
                    f"{report.objects_after / max(1, touched):.0f}",
                )
                print("| " + " | ".join(str(v) for v in row) + " |", flush=True)
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
