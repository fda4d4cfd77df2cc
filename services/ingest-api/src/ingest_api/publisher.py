"""Kafka publishing with the delivery guarantee the API promises.

The producer is idempotent with acks=all, so a send the broker acknowledged is on every
in-sync replica, and the producer's own retries never write an event twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ingest_api import metrics

log = logging.getLogger(__name__)


class PublishError(Exception):
    """Kafka did not acknowledge every event in time; the client should retry."""


class KafkaPublisher:
    def __init__(self, bootstrap_servers: str, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            request_timeout_ms=int(timeout_seconds * 1000),
            client_id="ingest-api",
        )
        self.ready = False
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Starting needs the broker; the API still comes up (not ready) when Kafka is down.
        try:
            await asyncio.wait_for(self.producer.start(), self.timeout_seconds)
            self.ready = True
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("kafka not reachable at start", extra={"error": repr(exc)})
        self._watch = asyncio.create_task(self._watch_connection())

    async def stop(self) -> None:
        if self._watch:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        with contextlib.suppress(KafkaError):
            await self.producer.stop()

    async def _watch_connection(self) -> None:
        started = self.ready
        while True:
            await asyncio.sleep(2)
            try:
                if not started:
                    await asyncio.wait_for(self.producer.start(), self.timeout_seconds)
                    started = True
                else:
                    await asyncio.wait_for(
                        self.producer.client.fetch_all_metadata(), self.timeout_seconds
                    )
                self.ready = True
            except (KafkaError, TimeoutError, OSError):
                self.ready = False
            metrics.READY.set(1 if self.ready else 0)

    async def publish(self, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
        """Send (key, value) pairs; return only once Kafka acknowledged all of them."""
        if not messages:
            return
        begin = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_seconds):
                futures = [
                    await self.producer.send(topic, value, key=key) for key, value in messages
                ]
                await asyncio.gather(*futures)
        except (KafkaError, TimeoutError, OSError) as exc:
            metrics.KAFKA_ERRORS.inc()
            self.ready = False
            metrics.READY.set(0)
            raise PublishError(repr(exc)) from exc
        finally:
            metrics.PUBLISH_SECONDS.observe(time.perf_counter() - begin)
