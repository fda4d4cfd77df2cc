"""Events over HTTP -> Kafka -> Spark -> S3 -> loader -> warehouse, checked exactly."""

from __future__ import annotations

import asyncio
import gzip
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from aiokafka import AIOKafkaProducer

from clickstream_local.config import TOPIC_PARTITIONS
from tests.conftest import StackFactory, group_lag, read_topic, send_closed_range, wait_for

pytestmark = pytest.mark.platform

S3_EVENTS_TOPIC = "clickstream.s3-events"
LOADER_GROUP = "warehouse-loader"


def minute(ts: str) -> datetime:
    return datetime.fromisoformat(ts).astimezone(UTC).replace(second=0, microsecond=0)


def expected_minute_counts(
    events: list[dict[str, Any]],
) -> dict[tuple[datetime, str], tuple[int, int]]:
    """Per (minute, event_type): events and distinct users, computed in plain Python."""
    counts: Counter[tuple[datetime, str]] = Counter()
    users: defaultdict[tuple[datetime, str], set[str]] = defaultdict(set)
    for event in events:
        key = (minute(event["timestamp"]), event["event_type"])
        counts[key] += 1
        users[key].add(event.get("user_id") or event["anonymous_id"])
    return {key: (counts[key], len(users[key])) for key in counts}


def warehouse_counts(
    dsn: str, start: datetime, end: datetime
) -> dict[tuple[datetime, str], tuple[int, int]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT window_start, event_type, events, unique_users "
            "FROM analytics.event_counts_minute WHERE window_start >= %s AND window_start < %s",
            (start, end),
        ).fetchall()
    return {(r[0].astimezone(UTC), r[1]): (r[2], r[3]) for r in rows}


def raw_zone_event_ids(info: Any) -> Counter[str]:
    s3 = info.s3_client()
    ids: Counter[str] = Counter()
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=info.s3_bucket, Prefix="raw/events/"
    ):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith(".gz"):
                continue
            body = s3.get_object(Bucket=info.s3_bucket, Key=obj["Key"])["Body"].read()
            for line in gzip.decompress(body).splitlines():
                if line.strip():
                    ids[orjson.loads(line)["event_id"]] += 1
    return ids


async def replay_s3_notifications(bootstrap: str) -> int:
    """Publish every S3 notification on the topic a second time; return how many."""
    records = await read_topic(bootstrap, S3_EVENTS_TOPIC, TOPIC_PARTITIONS[S3_EVENTS_TOPIC])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(S3_EVENTS_TOPIC, record.value, key=record.key)
    finally:
        await producer.stop()
    return len(records)


async def loader_lag(bootstrap: str) -> int:
    """Notifications not yet processed (committed) by the loader's consumer group."""
    return await group_lag(
        bootstrap, LOADER_GROUP, S3_EVENTS_TOPIC, TOPIC_PARTITIONS[S3_EVENTS_TOPIC]
    )


# SASL_SSL: every service connects through the broker's TLS + SCRAM-SHA-512 listener only
# (clickstream_local.kafka_tls), as to a managed Kafka; the test's own Kafka checks below use
# the broker's plaintext listener. kinesis: Kinesis (kinesis-local) is the bus between the
# collector and the processor; the lake's notifications still reach the loader over Kafka
# (versitygw sends them there).
@pytest.mark.parametrize(
    ("bus", "kafka_security"),
    [("kafka", "PLAINTEXT"), ("kafka", "SASL_SSL"), ("kinesis", "PLAINTEXT")],
)
def test_events_flow_exactly_from_http_to_the_warehouse(
    stack_factory: StackFactory, bus: str, kafka_security: str
) -> None:
    # A stack of its own: the watermark is per query, and other tests' traffic would move it.
    running = stack_factory(
        services=("ingest-api", "stream-processor", "warehouse-loader"),
        kafka_security=kafka_security,
        bus=bus,
    )
    info = running.info
    if kafka_security == "SASL_SSL":
        env = running.stack.components["ingest-api"].env()
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["KAFKA_BOOTSTRAP_SERVERS"] != info.kafka_bootstrap
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # Four whole event-time minutes, far enough back that current traffic closes them.
    start, end = now - timedelta(minutes=7), now - timedelta(minutes=3)
    events, stats = send_closed_range(info, start, end, 3000, seed=2026)

    expected = expected_minute_counts(events)
    assert len({m for m, _ in expected}) >= 3

    def warehouse_matches() -> dict[Any, Any] | None:
        got = warehouse_counts(info.warehouse_dsn, start, end)
        return got if got == expected else None

    wait_for(
        warehouse_matches,
        timeout=240,
        interval=2,
        what="the warehouse to hold the exact closed-window counts",
    )

    # The raw zone holds every accepted event exactly once.
    sent_ids = {e["event_id"] for e in stats.accepted_events}

    def raw_zone_complete() -> Counter[str] | None:
        found = raw_zone_event_ids(info)
        return found if sent_ids <= set(found) else None

    ids = wait_for(raw_zone_complete, timeout=60, interval=2, what="every event in the raw zone")
    assert set(ids) == sent_ids
    assert max(ids.values()) == 1

    # Prometheus scrapes every service.
    def targets_up() -> dict[str, float] | None:
        answer = httpx.get(f"{info.prometheus_url}/api/v1/query", params={"query": "up"}).json()
        up = {r["metric"]["job"]: float(r["value"][1]) for r in answer["data"]["result"]}
        jobs = ("ingest-api", "stream-processor", "warehouse-loader")
        return up if all(up.get(j) == 1.0 for j in jobs) else None

    wait_for(targets_up, timeout=30, interval=1, what="Prometheus to report every service up")

    # Replaying every S3 notification changes no warehouse row.
    before = warehouse_counts(
        info.warehouse_dsn, start - timedelta(days=1), now + timedelta(days=1)
    )
    ledger_query = "SELECT object_key, etag, loaded_at FROM analytics.load_ledger"
    with psycopg.connect(info.warehouse_dsn) as conn:
        ledger_before = set(conn.execute(ledger_query).fetchall())
    replayed = asyncio.run(replay_s3_notifications(info.kafka_bootstrap))
    assert replayed > 0
    wait_for(
        lambda: asyncio.run(loader_lag(info.kafka_bootstrap)) == 0 or None,
        timeout=60,
        what="the loader to consume the replayed notifications",
    )
    after = warehouse_counts(info.warehouse_dsn, start - timedelta(days=1), now + timedelta(days=1))
    with psycopg.connect(info.warehouse_dsn) as conn:
        ledger_after = set(conn.execute(ledger_query).fetchall())
    assert after == before
    # No marker loaded again. The services keep running (the correction loop, the anomaly
    # detector), so a marker committed meanwhile may add a row of its own.
    assert ledger_before <= ledger_after
    loaded_before = {key for key, _, _ in ledger_before}
    assert not {key for key, _, _ in ledger_after - ledger_before} & loaded_before
