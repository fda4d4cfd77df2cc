"""Kafka stops mid-traffic: 2xx only for events that are in Kafka, 503 otherwise (acceptance 4)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest

from clickstream_local.config import EVENTS_TOPIC, TOPIC_PARTITIONS
from tests.conftest import StackFactory, wait_for
from tests.ingest.conftest import read_topic

pytestmark = pytest.mark.platform

MAX_REQUESTS = 20_000  # bounds the traffic whatever happens
MAX_SECONDS = 300.0


@dataclass
class Traffic:
    url: str
    key: str
    answers: list[tuple[int, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def statuses(self) -> Counter[int]:
        with self.lock:
            return Counter(status for status, _ in self.answers)

    def send_loop(self) -> None:
        began = time.monotonic()
        with httpx.Client(headers={"Authorization": f"Bearer {self.key}"}, timeout=30) as client:
            while not self.stop.is_set() and time.monotonic() - began < MAX_SECONDS:
                now = datetime.now(UTC).isoformat()
                ids = [str(uuid.uuid4()) for _ in range(5)]
                body = {
                    "sent_at": now,
                    "events": [
                        {"event_id": i, "event_type": "click", "timestamp": now, "user_id": i}
                        for i in ids
                    ],
                }
                try:
                    status = client.post(f"{self.url}/v1/events", json=body).status_code
                except httpx.TransportError:
                    status = -1  # the collector itself must never stop answering
                with self.lock:
                    self.answers.append((status, ids))
                    if len(self.answers) >= MAX_REQUESTS:
                        return
                if status == 503:
                    time.sleep(0.05)  # a client honouring Retry-After, shortened


def ready(url: str) -> int:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code
    except httpx.HTTPError:
        return -1


def test_kafka_outage_never_loses_an_acknowledged_event(stack_factory: StackFactory) -> None:
    running = stack_factory(
        services=("ingest-api",), env={"ingest-api": {"INGEST_PUBLISH_TIMEOUT_SECONDS": "2"}}
    )
    info = running.info
    kafka = running.stack.components["kafka"]
    traffic = Traffic(info.ingest_url, info.write_key)
    senders = [threading.Thread(target=traffic.send_loop) for _ in range(3)]
    for sender in senders:
        sender.start()
    try:
        wait_for(lambda: traffic.statuses()[202] >= 50, 60, 0.2, "traffic before the outage")
        kafka.stop()
        wait_for(lambda: ready(info.ingest_url) == 503, 60, 0.2, "readiness to turn false")
        wait_for(lambda: traffic.statuses()[503] >= 10, 60, 0.2, "503 answers during the outage")
        during = traffic.statuses()
        kafka.launch()
        kafka.wait_ready()
        wait_for(lambda: ready(info.ingest_url) == 200, 120, 0.5, "readiness to recover")
        wait_for(
            lambda: traffic.statuses()[202] >= during[202] + 50,
            120,
            0.2,
            "accepted traffic after the outage",
        )
    except AssertionError:
        log = running.stack.supervisor.log_file("ingest-api").read_text(errors="replace")
        print(f"statuses: {traffic.statuses()}\ningest-api log (end):\n{log[-6000:]}")
        raise
    finally:
        traffic.stop.set()
        for sender in senders:
            sender.join(timeout=60)

    statuses = traffic.statuses()
    assert set(statuses) <= {202, 503}, statuses
    acknowledged = {i for status, ids in traffic.answers if status == 202 for i in ids}
    stored = Counter(
        r.value["event_id"]
        for r in asyncio.run(
            read_topic(info.kafka_bootstrap, EVENTS_TOPIC, TOPIC_PARTITIONS[EVENTS_TOPIC])
        )
    )
    missing = acknowledged - set(stored)
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged events not in Kafka"
    # The idempotent producer never wrote an acknowledged event twice.
    assert all(stored[i] == 1 for i in acknowledged)
    metrics = httpx.get(f"{info.ingest_url}/metrics").text
    errors = next(
        line for line in metrics.splitlines() if line.startswith("ingest_kafka_errors_total ")
    )
    assert float(errors.split()[1]) > 0
    print(f"answers: {dict(statuses)}; acknowledged events: {len(acknowledged)}")
