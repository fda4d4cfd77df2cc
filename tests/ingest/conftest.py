"""A collector process of the tests' own, on the shared platform's real Kafka broker.

The shared stack's own ingest-api feeds the pipeline that the end-to-end test counts
exactly, so these tests never publish through it. Instead each session starts
`python -m ingest_api` (the same entry point as production) on a free port, configured by
environment variables, publishing to topics of its own on the same broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from clickstream_local.config import free_ports, repo_root
from clickstream_local.kafka_admin import ensure_topics
from clickstream_local.supervisor import terminate
from tests.conftest import RunningStack, wait_for
from tests.conftest import read_topic as read_whole_topic

KEYS: dict[str, Any] = {
    "it-open": "it-web",
    "it-shop": {"source": "it-shop", "allowed_origins": ["https://shop.example"]},
    "it-limited": {
        "source": "it-limited",
        "rate_limit_events_per_second": 1,
        "rate_limit_burst": 5,
    },
    # The browser retry test's own bucket.
    "it-retry": {"source": "it-retry", "rate_limit_events_per_second": 2, "rate_limit_burst": 4},
}


@dataclass
class Record:
    topic: str
    key: bytes | None
    value: dict[str, Any]
    size: int = 0  # bytes of the value as stored


async def read_topic(bootstrap: str, topic: str, partition_count: int) -> list[Record]:
    return [
        Record(topic, r.key, orjson.loads(r.value), len(r.value))
        for r in await read_whole_topic(bootstrap, topic, partition_count)
        if r.value is not None
    ]


@dataclass
class Collector:
    url: str
    bootstrap: str
    events_topic: str
    dlq_topic: str
    log_path: Path

    def events(self) -> list[Record]:
        """Every record on the collector's events topic, read up to its current end."""
        return asyncio.run(read_topic(self.bootstrap, self.events_topic, 6))

    def dead_letters(self) -> list[Record]:
        return asyncio.run(read_topic(self.bootstrap, self.dlq_topic, 3))

    def events_with(self, **match: Any) -> list[dict[str, Any]]:
        return [
            r.value for r in self.events() if all(r.value.get(k) == v for k, v in match.items())
        ]


def start_collector(
    bootstrap: str, state_dir: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Collector]:
    suffix = uuid.uuid4().hex[:8]
    events_topic, dlq_topic = f"it.{suffix}.events", f"it.{suffix}.dlq"
    ensure_topics(bootstrap, {events_topic: 6, dlq_topic: 3})
    (port,) = free_ports(1)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_EVENTS_TOPIC": events_topic,
        "KAFKA_DEAD_LETTER_TOPIC": dlq_topic,
        "INGEST_HOST": "127.0.0.1",
        "INGEST_PORT": str(port),
        "INGEST_WRITE_KEYS": json.dumps(KEYS),
        # The tests connect from 127.0.0.1 and play a proxy with X-Forwarded-For.
        "INGEST_TRUSTED_PROXIES": '["127.0.0.1/32"]',
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / f"ingest-{suffix}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ingest_api"],
            env=env,
            cwd=repo_root(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    collector = Collector(f"http://127.0.0.1:{port}", bootstrap, events_topic, dlq_topic, log_path)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"collector exited: {log_path.read_text()[-2000:]}")
        try:
            return httpx.get(f"{collector.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout=60, interval=0.3, what="the test collector to be ready")
    return process, collector


def stop_collector(process: subprocess.Popen[bytes]) -> None:
    terminate(process, timeout=15)


@contextmanager
def quiet_collector(bootstrap: str, state_dir: Path) -> Iterator[Collector]:
    """A collector of a test module's own, logging only warnings: generated traffic must
    not eat the shared collector's limits. It must never have logged a traceback."""
    process, collector = start_collector(
        bootstrap, state_dir, {"INGEST_ACCESS_LOG": "false", "LOG_LEVEL": "WARNING"}
    )
    try:
        yield collector
    finally:
        stop_collector(process)
        log = collector.log_path.read_text(errors="replace")
        assert "Traceback" not in log and "Exception in ASGI" not in log, log[-5000:]


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """The shared stack's broker; CLICKSTREAM_TEST_KAFKA names another one (quick reruns)."""
    override = os.environ.get("CLICKSTREAM_TEST_KAFKA")
    if override:
        return override
    running: RunningStack = request.getfixturevalue("running_stack")
    return running.info.kafka_bootstrap


@pytest.fixture(scope="session")
def collector(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Collector]:
    process, found = start_collector(kafka_bootstrap, tmp_path_factory.mktemp("collector"))
    try:
        yield found
    finally:
        stop_collector(process)
