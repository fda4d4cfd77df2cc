"""The real platform on free ports: Kafka, S3 notifications, PostgreSQL, Prometheus, stop."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from clickstream_local.stack import Stack, platform_of
from clickstream_local.supervisor import proc_stat, wait_until

pytestmark = pytest.mark.platform


def test_all_platform_parts_ready(platform_stack: Stack) -> None:
    status = {s.name: s for s in platform_stack.status()}
    for name in ("kafka", "s3", "postgres", "prometheus"):
        assert status[name].ready, name
    assert status["ingest-api"].pid is None


def test_start_again_is_a_noop(platform_stack: Stack) -> None:
    pids = {s.name: s.pid for s in platform_stack.status()}
    lines: list[str] = []
    again = Stack(platform_stack.config, progress=lines.append)
    started = time.monotonic()
    again.start()
    assert time.monotonic() - started < 10
    assert {s.name: s.pid for s in again.status()} == pids
    assert sum("already running" in line for line in lines) == len(platform_of(again.config))


def test_topics_have_contract_partitions(platform_stack: Stack) -> None:
    async def describe() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=platform_stack.config.kafka_bootstrap)
        await admin.start()
        try:
            topics = await admin.describe_topics(
                ["clickstream.events", "clickstream.events.dlq", "clickstream.s3-events"]
            )
            return {t["topic"]: len(t["partitions"]) for t in topics}
        finally:
            await admin.close()

    assert asyncio.run(asyncio.wait_for(describe(), timeout=30)) == {
        "clickstream.events": 6,
        "clickstream.events.dlq": 3,
        "clickstream.s3-events": 3,
    }


def test_kafka_round_trip(platform_stack: Stack) -> None:
    bootstrap = platform_stack.config.kafka_bootstrap
    payload = uuid.uuid4().hex.encode()

    async def round_trip() -> bytes | None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            meta = await producer.send_and_wait("clickstream.events", payload, key=b"user-1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        await consumer.start()
        try:
            tp = TopicPartition("clickstream.events", meta.partition)
            consumer.assign([tp])
            consumer.seek(tp, meta.offset)
            msg = await asyncio.wait_for(consumer.getone(), timeout=10)
            return bytes(msg.value) if msg.value is not None else None
        finally:
            await consumer.stop()

    assert asyncio.run(asyncio.wait_for(round_trip(), timeout=30)) == payload


async def _find_notification(bootstrap: str, key: str, wait_s: float) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        "clickstream.s3-events",
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                for msg in messages:
                    body = json.loads(msg.value or b"{}")
                    for record in body.get("Records", []):
                        if record["s3"]["object"]["key"] == key:
                            return dict(record)
        raise AssertionError(f"no notification for {key!r} within {wait_s}s")
    finally:
        await consumer.stop()


def test_s3_put_object_notifies_kafka(platform_stack: Stack) -> None:
    info = platform_stack.connection_info()
    s3 = info.s3_client()
    # '=' and ' ' are percent-encoded on the wire; the notification carries the plain key.
    key = f"processed/test/date=2024-01-01/hour=00/batch {uuid.uuid4().hex}.json"
    s3.put_object(Bucket=info.s3_bucket, Key=key, Body=b'{"ok": true}')
    s3.delete_object(Bucket=info.s3_bucket, Key=key)  # filtered out: created events only
    record = asyncio.run(
        asyncio.wait_for(_find_notification(info.kafka_bootstrap, key, wait_s=15), timeout=30)
    )
    assert record["eventName"] == "s3:ObjectCreated:Put"
    assert record["s3"]["bucket"]["name"] == "clickstream-lake"
    assert record["s3"]["object"]["size"] == len(b'{"ok": true}')


def test_postgres_query(platform_stack: Stack) -> None:
    with psycopg.connect(platform_stack.config.warehouse_dsn, connect_timeout=5) as conn:
        row = conn.execute("SELECT current_database(), current_user, 1 + 1").fetchone()
    assert row == ("clickstream", "postgres", 2)


def test_prometheus_ready_and_scraping_itself(platform_stack: Stack) -> None:
    url = platform_stack.config.prometheus_url
    assert httpx.get(f"{url}/-/ready", timeout=5).status_code == 200
    wanted = {"prometheus", "ingest-api", "stream-processor", "warehouse-loader"}

    def targets() -> list[dict[str, Any]]:
        data = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]
        return list(data["activeTargets"])

    # Service discovery fills the target list shortly after /-/ready.
    wait_until(lambda: wanted <= {t["labels"]["job"] for t in targets()}, 15, "targets")
    # Prometheus scrapes itself every 2 s; the services are down here.
    wait_until(
        lambda: any(t["labels"]["job"] == "prometheus" and t["health"] == "up" for t in targets()),
        15,
        "self-scrape",
    )


def _processes_using(state: Path) -> list[str]:
    """Live processes whose command line mentions the state dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        stat = proc_stat(int(entry.name))
        if str(state) in cmd and stat is not None and stat.state != "Z":
            found.append(f"{entry.name}: {cmd[:120]}")
    return found


def test_stop_leaves_no_process(platform_stack: Stack) -> None:
    pids = [s.pid for s in platform_stack.status() if s.pid is not None]
    assert len(pids) == len(platform_of(platform_stack.config))
    platform_stack.stop()
    assert all(s.pid is None for s in platform_stack.status())
    for pid in pids:
        stat = proc_stat(pid)
        assert stat is None or stat.state == "Z", pid
    assert _processes_using(platform_stack.config.state_dir) == []
    assert not list(platform_stack.config.run_dir.glob("*.pid"))
