"""The collector on every core (#20): worker processes on one port, against the real broker.

Each request goes on a connection of its own, so the kernel (SO_REUSEPORT) spreads them over
the workers. Which worker answered is read from the workers' own metrics files (prometheus-
client's multiprocess mode keeps one per process id), one file at a time.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_for
from tests.ingest.conftest import KEYS, Collector, start_collector, stop_collector

pytestmark = pytest.mark.platform

WORKERS = 2
LIMITED_RATE = 0.05  # events/s: the test's whole run refills at most a few
LIMITED_BURST = 5


@pytest.fixture(scope="module")
def workers(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Collector, Path, int]]:
    state = tmp_path_factory.mktemp("workers")
    metrics_dir = state / "metrics"
    keys = {
        **KEYS,
        "w-limited": {
            "source": "w-limited",
            "rate_limit_events_per_second": LIMITED_RATE,
            "rate_limit_burst": LIMITED_BURST,
        },
    }
    process, collector = start_collector(
        kafka_bootstrap,
        state,
        {
            "INGEST_WORKERS": str(WORKERS),
            "INGEST_METRICS_DIR": str(metrics_dir),
            "INGEST_WRITE_KEYS": json.dumps(keys),
        },
    )
    try:
        yield collector, metrics_dir, process.pid
    finally:
        stop_collector(process)
        assert process.returncode == 0, collector.log_path.read_text()[-3000:]
        log = collector.log_path.read_text(errors="replace")
        assert "Traceback" not in log, log[-5000:]


def samples(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def per_worker(metrics_dir: Path, tmp: Path, name: str, **labels: str) -> dict[int, float]:
    """pid -> the metric's value in that worker's counter file alone."""
    from prometheus_client.exposition import generate_latest

    values: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.removeprefix("counter_"))
        alone = tmp / f"pid-{pid}-{uuid.uuid4().hex[:6]}"
        alone.mkdir()
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
        values[pid] = samples(generate_latest(registry).decode(), name, **labels)
    return values


def event(event_id: str) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"event_id": event_id, "event_type": "click", "timestamp": now, "user_id": event_id}


def post(collector: Collector, key: str, events: list[dict[str, Any]]) -> int:
    # No client kept: a new connection per request, which the kernel may give any worker.
    return httpx.post(
        f"{collector.url}/v1/events",
        json={"events": events},
        headers={"Authorization": f"Bearer {key}", "Connection": "close"},
        timeout=30,
    ).status_code


def worker_pids(supervisor: int) -> set[int]:
    """The supervisor's children that serve (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    pids = set()
    for pid in map(int, children):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            pids.add(pid)
    return pids


def test_requests_are_served_by_every_worker_and_counted_once(
    workers: tuple[Collector, Path, int], tmp_path: Path
) -> None:
    collector, metrics_dir, _ = workers
    before = httpx.get(f"{collector.url}/metrics", timeout=10).text
    sent = [f"mw-{uuid.uuid4()}" for _ in range(80)]
    statuses = [post(collector, "it-open", [event(a), event(b)]) for a, b in zip(*[iter(sent)] * 2)]
    assert statuses == [202] * 40

    # Every event is in Kafka once.
    found = [e["event_id"] for e in collector.events_with(source="it-web") if e["event_id"] in sent]
    assert sorted(found) == sorted(sent)

    # /metrics, answered by one worker, counts what all of them accepted.
    after = httpx.get(f"{collector.url}/metrics", timeout=10).text
    accepted = "ingest_events_accepted_total"
    assert (
        samples(after, accepted, source="it-web") - samples(before, accepted, source="it-web") == 80
    )
    served = per_worker(
        metrics_dir, tmp_path, "ingest_http_requests_total", route="/v1/events", status="202"
    )
    assert len([pid for pid, count in served.items() if count > 0]) == WORKERS, served
    total = samples(after, "ingest_http_requests_total", route="/v1/events", status="202")
    assert sum(served.values()) == total >= 40
    assert samples(after, "ingest_ready") == 1.0


def test_a_rate_limit_holds_across_workers(
    workers: tuple[Collector, Path, int], tmp_path: Path
) -> None:
    collector, metrics_dir, _ = workers
    refused_before = per_worker(
        metrics_dir, tmp_path, "ingest_http_requests_total", route="/v1/events", status="429"
    )
    began = time.monotonic()
    sent = [f"rl-{uuid.uuid4()}" for _ in range(30)]
    statuses = [post(collector, "w-limited", [event(event_id)]) for event_id in sent]
    elapsed = time.monotonic() - began
    accepted = statuses.count(202)
    # One bucket per pod: the burst plus what refilled meanwhile. A bucket per worker would
    # have let each worker pass a burst of its own.
    assert LIMITED_BURST <= accepted <= LIMITED_BURST + math.ceil(elapsed * LIMITED_RATE)
    assert statuses.count(429) == len(sent) - accepted
    assert accepted < WORKERS * LIMITED_BURST
    refused = per_worker(
        metrics_dir, tmp_path, "ingest_http_requests_total", route="/v1/events", status="429"
    )
    refusing = [pid for pid in refused if refused[pid] > refused_before.get(pid, 0)]
    assert len(refusing) == WORKERS, (refused_before, refused)
    in_kafka = [e["event_id"] for e in collector.events_with(source="w-limited")]
    assert sorted(in_kafka) == sorted(s for s, code in zip(sent, statuses) if code == 202)


def readiness(collector: Collector) -> int:
    try:
        return httpx.get(f"{collector.url}/readyz", timeout=5).status_code
    except httpx.HTTPError:
        return -1


def test_a_worker_that_dies_makes_the_pod_unready_until_it_is_replaced(
    workers: tuple[Collector, Path, int],
) -> None:
    collector, _, supervisor = workers
    pids = wait_for(lambda: worker_pids(supervisor), timeout=10, what="the worker processes")
    assert len(pids) == WORKERS
    counted = samples(
        httpx.get(f"{collector.url}/metrics", timeout=10).text, "ingest_http_requests_total"
    )
    assert readiness(collector) == 200
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: readiness(collector) == 503, timeout=30, interval=0.05, what="503 from /readyz"
    )
    wait_for(lambda: readiness(collector) == 200, timeout=90, what="/readyz back to 200")
    replaced = worker_pids(supervisor)
    assert len(replaced) == WORKERS and victim not in replaced
    # The dead worker's counts stay in the sum.
    after = samples(
        httpx.get(f"{collector.url}/metrics", timeout=10).text, "ingest_http_requests_total"
    )
    assert after >= counted
