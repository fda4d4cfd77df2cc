"""Fixtures for cross-service tests: one real local stack per test session.

The stack runs on free ports in its own state directory, so the suite can run beside a
`make up`; it reuses the downloads that `local/bootstrap.sh` cached.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from clickstream_common import polling
from clickstream_local.config import StackConfig
from clickstream_local.stack import ConnectionInfo, Stack

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | None], timeout: float, interval: float = 0.5, what: str = ""
) -> T:
    """Poll `condition` until it returns something truthy, or fail the test at the deadline."""
    return polling.wait_for(condition, timeout, what, interval=interval, error=AssertionError)


async def read_topic(
    bootstrap: str, topic: str, partitions: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of a topic, from the beginning to its end when called (the tests' one way
    to read a whole topic)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        records: list[ConsumerRecord[bytes, bytes]] = []
        for tp in assigned:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=2000)
                records += [r for r in batch.get(tp, []) if r.offset < ends[tp]]
        return records
    finally:
        await consumer.stop()


async def group_lag(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Records of a topic a consumer group has not committed yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(assigned)
        return sum(ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in assigned)
    finally:
        await consumer.stop()
        await admin.close()


@dataclass
class RunningStack:
    stack: Stack
    info: ConnectionInfo

    @property
    def prometheus_url(self) -> str:
        return self.info.prometheus_url


def _new_stack(
    services: tuple[str, ...],
    env: dict[str, dict[str, str]] | None = None,
    **config_overrides: Any,
) -> tuple[Stack, Path]:
    config = StackConfig.scratch(
        "test-stacks",
        f"{os.getpid()}-{uuid.uuid4().hex[:6]}",
        service_env=env or {},
        **config_overrides,
    )
    state = config.state_dir
    stack = Stack(config, progress=lambda line: print(line, flush=True))
    try:
        stack.start(platform=True, services=False)
        for name in services:
            stack.components[name].launch()
        for name in services:
            stack.components[name].wait_ready()
    except BaseException:
        _stop(stack, state)
        raise
    return stack, state


def _stop(stack: Stack, state: Path) -> None:
    stack.stop()
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def running_stack() -> Iterator[RunningStack]:
    """The platform and the five services, started once per session, stopped at the end.

    Shared by every test that uses it: never stop or disturb its parts.
    """
    stack, state = _new_stack(
        ("ingest-api", "stream-processor", "warehouse-loader", "recommender", "anomaly-detector")
    )
    try:
        yield RunningStack(stack, stack.connection_info())
    finally:
        _stop(stack, state)


StackFactory = Callable[..., RunningStack]


@pytest.fixture
def stack_factory() -> Iterator[StackFactory]:
    """Fresh stacks of a test's own (for destructive tests), stopped when the test ends.

    `stack_factory(services=("ingest-api",), env={"ingest-api": {"NAME": "value"}})` starts
    the whole platform plus the named services on new free ports; other keyword arguments
    are StackConfig fields (e.g. `kafka_security="SASL_SSL"`, `alert_targets`).
    """
    started: list[tuple[Stack, Path]] = []

    def make(
        services: tuple[str, ...] = (),
        env: dict[str, dict[str, str]] | None = None,
        **config_overrides: Any,
    ) -> RunningStack:
        stack, state = _new_stack(services, env, **config_overrides)
        started.append((stack, state))
        return RunningStack(stack, stack.connection_info())

    try:
        yield make
    finally:
        for stack, state in started:
            _stop(stack, state)


def send_closed_range(
    info: ConnectionInfo, start: Any, end: Any, count: int, seed: int
) -> tuple[list[dict[str, Any]], Any]:
    """`count` simulated events in [start, end) over HTTP, then a few of "now" that move the
    watermark past the range (its windows and sessions close); every one must be accepted.
    Returns the range's events and the delivery stats (which hold every accepted event)."""
    from datetime import UTC, datetime, timedelta

    from clickstream_simulator.generator import ClickstreamGenerator
    from clickstream_simulator.sender import DeliveryStats, HttpSender, batched

    events = ClickstreamGenerator(seed=seed).events_between(start, end, count)
    closing = ClickstreamGenerator(seed=seed + 1).events_between(
        datetime.now(UTC), datetime.now(UTC) + timedelta(seconds=1), 20
    )
    stats = DeliveryStats()
    sender = HttpSender(info.ingest_url, info.write_key)
    try:
        for batch in batched(events, 100):
            sender.send(batch, stats)
        sender.send(closing, stats)
    finally:
        sender.close()
    assert stats.rejected == 0 and stats.accepted == len(events) + len(closing)
    return events, stats


@pytest.fixture(scope="session")
def live_pipeline(running_stack: RunningStack) -> RunningStack:
    """The shared stack after real traffic (valid and invalid events) went through every stage.

    Traffic is stamped "now", so it lands in open windows and never disturbs the closed
    windows other tests check.
    """
    from datetime import UTC, datetime, timedelta

    import httpx

    from clickstream_simulator.generator import ClickstreamGenerator
    from clickstream_simulator.sender import DeliveryStats, HttpSender, batched

    info = running_stack.info
    now = datetime.now(UTC)
    # Whole sessions over the last 90 s, so the funnel reaches purchases too.
    events = ClickstreamGenerator(seed=99).events_between(now - timedelta(seconds=90), now, 1500)
    # One invalid event, so the rejection and dead-letter series exist too.
    invalid = {"event_type": "Not Valid", "timestamp": now.isoformat(), "anonymous_id": "x"}
    events.insert(50, invalid)

    def prometheus_value(query: str) -> float | None:
        answer = httpx.get(
            f"{info.prometheus_url}/api/v1/query", params={"query": query}, timeout=5
        ).json()
        result = answer["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    # Two rounds with a scrape between them, as continuous traffic would give: rate() and
    # increase() need a counter to move between two samples.
    sender = HttpSender(info.ingest_url, info.write_key)
    try:
        half = len(events) // 2
        for batch in batched(events[:half], 100):
            sender.send(batch, DeliveryStats())
        wait_for(
            lambda: prometheus_value("sum(ingest_events_accepted_total)"),
            timeout=60,
            what="Prometheus to scrape the first round",
        )
        for batch in batched(events[half:], 100):
            sender.send(batch, DeliveryStats())
    finally:
        sender.close()

    # A producer that bypasses the collector: the processor must route its record to errors/.
    async def publish_malformed() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=info.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait("clickstream.events", b"{not json", key=b"bypass")
        finally:
            await producer.stop()

    asyncio.run(publish_malformed())

    def loaded_and_scraped() -> bool:
        rows = prometheus_value("sum(loader_rows_loaded_total)")
        moved = prometheus_value("sum(increase(ingest_events_accepted_total[5m]))")
        return bool(rows) and bool(moved)

    wait_for(loaded_and_scraped, timeout=180, interval=2, what="the loader's rows in Prometheus")

    # The recommendations API answers (its latency and answer panels need requests).
    from clickstream_local.config import RECOMMENDER_READ_KEY

    recommender = f"http://127.0.0.1:{running_stack.stack.config.recommender_port}"
    auth = {"Authorization": f"Bearer {RECOMMENDER_READ_KEY}"}
    for path in ("/trending", "/users/U000001", "/products/P00001/similar"):
        httpx.get(f"{recommender}/v1/recommendations{path}", headers=auth, timeout=5)
    wait_for(
        lambda: (
            prometheus_value("sum(recommender_http_requests_total)")
            and prometheus_value("sum(anomaly_buckets_closed_total)")
        ),
        timeout=180,
        interval=2,
        what="the recommender's and the anomaly detector's metrics in Prometheus",
    )
    return running_stack
