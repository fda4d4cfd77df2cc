"""The anomaly detector on the real platform: events in Kafka -> an anomaly in the topic
`clickstream.anomalies`, in `analytics.anomalies` through the lake and the unchanged loader,
and in Prometheus; a restart resumes from the checkpoint without scoring a bucket twice.

Buckets are 5 seconds here (a minute in production), and the history is produced straight to
Kafka with `received_at` stamps in the past, so the models are warm within seconds.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.conftest import StackFactory, wait_for

pytestmark = pytest.mark.platform

BUCKET = 5
DETECTOR_ENV = {
    "ANOMALY_BUCKET_SECONDS": str(BUCKET),
    "ANOMALY_GRACE_SECONDS": "1",
    "ANOMALY_MIN_HISTORY": "12",
    "ANOMALY_WINDOW": "30",
    "ANOMALY_STARTING_OFFSETS": "earliest",
    # The history is minutes old: let it raise the gauge too.
    "ANOMALY_ALERT_MAX_AGE_SECONDS": "3600",
}


def event(t: datetime, event_type: str, **extra: Any) -> bytes:
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": event_type,
            "timestamp": t.isoformat(),
            "event_time": t.isoformat(),
            "received_at": t.isoformat(),
            "source": "web",
            "anonymous_id": f"a-{uuid.uuid4().hex[:6]}",
            **extra,
        }
    )


def traffic(start: datetime, buckets: int, checkout: bool) -> list[bytes]:
    """Per 5 s: 40 product views, 10 add-to-carts, 6 checkouts (none when `checkout` is off)."""
    out = []
    for b in range(buckets):
        base = start + timedelta(seconds=b * BUCKET)
        for i in range(40):
            out.append(
                event(base + timedelta(seconds=i * 0.1), "product_view", product_id=f"P{i % 9}")
            )
        for i in range(10):
            out.append(event(base + timedelta(seconds=i * 0.4), "add_to_cart", product_id="P1"))
        if checkout:
            for i in range(6):
                out.append(event(base + timedelta(seconds=i * 0.7), "checkout", revenue=20.0))
    return out


async def produce(bootstrap: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send("clickstream.events", value, key=value[-12:])
        await producer.flush()
    finally:
        await producer.stop()


async def anomalies_in_topic(bootstrap: str) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        "clickstream.anomalies", bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=2000)
        return [orjson.loads(r.value) for records in batches.values() for r in records]
    finally:
        await consumer.stop()


def metric(prometheus_url: str, query: str) -> float | None:
    answer = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=5).json()
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_an_outage_reaches_topic_warehouse_and_prometheus(stack_factory: StackFactory) -> None:
    running = stack_factory(
        services=("warehouse-loader", "anomaly-detector"), env={"anomaly-detector": DETECTOR_ENV}
    )
    info = running.info
    # Aligned to the buckets, so the outage fills whole buckets.
    now = datetime.fromtimestamp(int(datetime.now(UTC).timestamp()) // BUCKET * BUCKET, UTC)
    start = now - timedelta(seconds=BUCKET * 50)
    normal = traffic(start, 44, checkout=True)
    outage = traffic(start + timedelta(seconds=BUCKET * 44), 4, checkout=False)
    # A later event moves the watermark past the outage's buckets.
    closing = [event(now + timedelta(seconds=2), "product_view", product_id="P1")]
    asyncio.run(produce(info.kafka_bootstrap, normal + outage + closing))

    found = wait_for(
        lambda: [
            a
            for a in asyncio.run(anomalies_in_topic(info.kafka_bootstrap))
            if a["series"] == "events:checkout:web"
        ],
        timeout=120,
        what="a checkout anomaly in clickstream.anomalies",
    )
    first = min(found, key=lambda a: a["window_start"])
    assert first["observed"] == 0 and first["expected"] > 3 and first["score"] <= -6
    outage_start = start + timedelta(seconds=BUCKET * 44)
    # Found within the outage's buckets (a 6-a-bucket series needs 2 or 3 empty ones).
    first_start = datetime.fromisoformat(first["window_start"])
    assert outage_start <= first_start < outage_start + timedelta(seconds=BUCKET * 4)

    def in_warehouse() -> list[tuple[Any, ...]]:
        try:
            with psycopg.connect(info.warehouse_dsn, connect_timeout=3) as conn:
                return conn.execute(
                    "SELECT series, window_start, observed, score FROM analytics.anomalies "
                    "WHERE series = 'events:checkout:web' ORDER BY window_start"
                ).fetchall()
        except psycopg.Error:
            return []

    rows = wait_for(in_warehouse, timeout=120, what="the anomaly in analytics.anomalies")
    assert rows[0][1] == first_start and rows[0][2] == 0
    active = wait_for(
        lambda: (
            metric(info.prometheus_url, 'max(anomaly_active{series="events:checkout:web"})')
            is not None
        ),
        timeout=60,
        what="anomaly_active in Prometheus",
    )
    assert active
    closed_before = metric(info.prometheus_url, "sum(anomaly_buckets_closed_total)") or 0

    # A restart resumes from the checkpoint: nothing is scored again, so no new anomaly rows.
    detector = running.stack.components["anomaly-detector"]
    detector.stop()
    detector.start()
    asyncio.run(produce(info.kafka_bootstrap, [event(now + timedelta(seconds=9), "product_view")]))
    wait_for(
        lambda: (metric(info.prometheus_url, "sum(anomaly_buckets_closed_total)") or 0) >= 1,
        timeout=60,
        what="the restarted detector to close a bucket",
    )
    # The new event closes new (empty) buckets, which may be anomalous too; but no bucket that
    # closed before the restart is scored again.
    again = [
        (a["series"], a["window_start"])
        for a in asyncio.run(anomalies_in_topic(info.kafka_bootstrap))
    ]
    assert len(again) == len(set(again)), "a restart scored buckets of the checkpoint again"
    assert {("events:checkout:web", a["window_start"]) for a in found} <= set(again)
    assert closed_before > 40
