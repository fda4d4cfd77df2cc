"""In-process doubles for the collector's unit tests: a bus in memory and a fixed clock.

The fakes stand in for Kafka only in these unit tests; tests/ingest runs the same code
against a real broker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from ingest_api.collector import Collector
from ingest_api.config import Settings
from ingest_api.main import create_app
from ingest_api.publisher import PublishError, Records

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
KEYS: dict[str, Any] = {
    "k-web": "web",
    "k-shop": {"source": "shop", "allowed_origins": ["https://shop.example"]},
    "k-slow": {"source": "slow", "rate_limit_events_per_second": 1, "rate_limit_burst": 3},
}


class MemoryPublisher:
    """The `Publisher` protocol in memory; `failing` makes every publish raise."""

    def __init__(self) -> None:
        self.ready = False
        self.failing = False
        self.events: list[tuple[bytes, dict[str, Any]]] = []
        self.dead_letters: list[tuple[bytes, dict[str, Any]]] = []

    async def start(self) -> None:
        self.ready = True

    async def stop(self) -> None:
        self.ready = False

    async def check(self) -> bool:
        return self.ready

    async def publish(self, events: Records, dead_letters: Records) -> None:
        if self.failing:
            events.clear()  # the producer may hold them already
            dead_letters.clear()
            raise PublishError("broker away")
        self.events += [(k, orjson.loads(v)) for k, v in events]
        self.dead_letters += [(k, orjson.loads(v)) for k, v in dead_letters]
        events.clear()
        dead_letters.clear()


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"ingest_write_keys": KEYS, **overrides}
    return Settings(**values)


AppFactory = Callable[..., tuple[TestClient, MemoryPublisher]]


@pytest.fixture
def app_client() -> Iterator[AppFactory]:
    """`app_client(fast_path=True, **settings)`: a started app (lifespan run) on a memory
    bus, at the fixed time T0."""
    opened: list[TestClient] = []

    def make(fast_path: bool = True, **overrides: Any) -> tuple[TestClient, MemoryPublisher]:
        publisher = MemoryPublisher()
        app = create_app(
            settings(ingest_fast_path=fast_path, **overrides), publisher, clock=lambda: T0
        )
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client, publisher

    try:
        yield make
    finally:
        for client in opened:
            client.__exit__(None, None, None)


CollectorFactory = Callable[..., tuple[Collector, MemoryPublisher]]


@pytest.fixture
def make_collector() -> CollectorFactory:
    """`make_collector(**settings)`: the core alone on a memory bus, at the fixed time T0."""

    def make(**overrides: Any) -> tuple[Collector, MemoryPublisher]:
        bus = MemoryPublisher()
        bus.ready = True
        return Collector(settings(**overrides), bus, clock=lambda: T0), bus

    return make
