"""Publishing to the bus, with the delivery guarantee the API promises.

`Publisher` is what the collector core needs from a bus; `KafkaPublisher` is the Kafka one.
Its producer is idempotent with acks=all, so a send the broker acknowledged is on every
in-sync replica, and the producer's own retries never write an event twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from clickstream_common.kafka_security import aiokafka_options
from ingest_api import metrics

if TYPE_CHECKING:
    from ingest_api.config import Settings

log = logging.getLogger(__name__)

Records = list[tuple[bytes, bytes]]
"""(key, value) records; the key chooses the partition (shard) and keeps a user's order."""


class PublishError(Exception):
    """The bus did not acknowledge every record in time; the client should retry."""


class Publisher(Protocol):
    """What the collector core needs from a bus (Kafka here; a Kinesis one can follow).

    `publish` returns only once the bus holds every record durably, or raises PublishError;
    it may empty the lists once it holds their records (the caller keeps no second copy).
    `ready` is what /readyz reports; `check` refreshes it (and may reconnect).
    """

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def check(self) -> bool: ...

    async def publish(self, events: Records, dead_letters: Records) -> None: ...


@lru_cache(maxsize=65536)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def partition_for(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """Kafka's default partitioner (murmur2 of the key, as the Java client), with the pure-
    Python hash cached: the same users send again and again."""
    if key is None:
        return random.choice(available or all_partitions)  # noqa: S311 - spreading, not secrets
    return all_partitions[_key_hash(key) % len(all_partitions)]


class WatchedReadiness:
    """What the publishers share: `ready` (and its gauge), logged when it changes, and a task
    that runs the publisher's `check` every `check_interval_seconds` while it is started."""

    bus = "bus"  # named in the log lines
    ready: bool
    check_interval_seconds: float
    _watch: asyncio.Task[None] | None

    async def check(self) -> bool:
        raise NotImplementedError

    def _set_ready(self, ready: bool) -> None:
        if ready != self.ready:
            logging.getLogger(type(self).__module__).info(
                "%s %s", self.bus, "reachable" if ready else "unreachable"
            )
        self.ready = ready
        metrics.READY.set(1 if ready else 0)

    def _start_watch(self) -> None:
        self._watch = asyncio.create_task(self._watch_loop())

    async def _stop_watch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval_seconds)
            await self.check()


class KafkaPublisher(WatchedReadiness):
    """One idempotent producer, replaced by a fresh one after a failed publish.

    A send that expired while the broker was away leaves the idempotent producer's sequence
    numbers ahead of the broker's (it answers OutOfOrderSequenceNumber from then on). A new
    producer gets a new producer id, so the watch task swaps one in once the broker answers.
    """

    bus = "kafka"

    def __init__(
        self,
        bootstrap_servers: str,
        timeout_seconds: float,
        events_topic: str,
        dead_letter_topic: str,
        linger_ms: int = 0,
        check_interval_seconds: float = 2.0,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        # Connection security (TLS, SASL): clickstream_common.kafka_security.aiokafka_options.
        self.client_options = dict(client_options or {})
        self.events_topic = events_topic
        self.dead_letter_topic = dead_letter_topic
        self.timeout_seconds = timeout_seconds
        self.linger_ms = linger_ms
        self.check_interval_seconds = check_interval_seconds
        self.producer: AIOKafkaProducer | None = None
        self.ready = False
        self._healthy = False
        self._watch: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            # Concurrent requests share batches: events queue while a produce request is in
            # flight, so even without linger a loaded collector sends full batches.
            linger_ms=self.linger_ms,
            max_batch_size=256 * 1024,
            request_timeout_ms=max(1000, int(self.timeout_seconds * 1000)),
            client_id="ingest-api",
            partitioner=partition_for,
            **self.client_options,
        )

    async def _close(self, producer: AIOKafkaProducer) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), self.timeout_seconds)

    async def _connect(self) -> bool:
        """Start a fresh producer and swap it in; the old one finishes in the background."""
        producer = self._new_producer()
        try:
            await asyncio.wait_for(producer.start(), self.timeout_seconds)
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("kafka not reachable", extra={"error": repr(exc)})
            await self._close(producer)
            return False
        old, self.producer, self._healthy = self.producer, producer, True
        if old is not None:
            task = asyncio.create_task(self._close(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        return True

    async def start(self) -> None:
        # Starting needs the broker; the API still comes up (not ready) when Kafka is down.
        self._set_ready(await self._connect())
        self._start_watch()

    async def stop(self) -> None:
        await self._stop_watch()
        if self.producer is not None:
            await self._close(self.producer)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    async def check(self) -> bool:
        """Readiness: a healthy producer (replaced if need be) and the cluster's metadata."""
        if self.producer is None or not self._healthy:
            ok = await self._connect()
        else:
            try:
                await asyncio.wait_for(
                    self.producer.client.fetch_all_metadata(), self.timeout_seconds
                )
                ok = True
            except (KafkaError, TimeoutError, OSError):
                ok = False
        self._set_ready(ok)
        return ok

    async def publish(self, events: Records, dead_letters: Records) -> None:
        """Send both lists to their topics; return only once Kafka acknowledged all. Each
        list is emptied once the producer holds its records."""
        if not events and not dead_letters:
            return
        batches = ((self.events_topic, events), (self.dead_letter_topic, dead_letters))
        producer = self.producer
        if producer is None:
            raise PublishError("kafka producer not connected")
        begin = time.perf_counter()
        futures: list[asyncio.Future[object]] = []
        try:
            async with asyncio.timeout(self.timeout_seconds):
                send = producer.send
                for topic, records in batches:
                    for key, value in records:
                        futures.append(await send(topic, value, key=key))
                    # The producer copied them into its batches: no second copy while waiting.
                    records.clear()
                await all_done(futures)
            for future in futures:
                error = future.exception()
                if error is not None:
                    raise error
        except (KafkaError, TimeoutError, OSError) as exc:
            for future in futures:
                # Sends that finish after the deadline: collect their outcome quietly.
                future.add_done_callback(_consume)
            metrics.KAFKA_ERRORS.inc()
            if producer is self.producer:
                self._healthy = False
            self._set_ready(False)
            raise PublishError(repr(exc)) from exc
        finally:
            metrics.PUBLISH_SECONDS.observe(time.perf_counter() - begin)
        if not self.ready and self._healthy:
            self._set_ready(True)


async def all_done(futures: Sequence[asyncio.Future[object]]) -> None:
    """Wait until every future is done, without cancelling them if the wait is cancelled
    (a deadline must not cancel the producer's own futures, unlike `gather`). One waiter
    and a countdown: `asyncio.wait` does more per call, on the hot path of every request."""
    pending = sum(1 for future in futures if not future.done())
    if pending == 0:
        return
    waiter = asyncio.get_running_loop().create_future()

    def one_done(_: asyncio.Future[object]) -> None:
        nonlocal pending
        pending -= 1
        if pending == 0 and not waiter.done():
            waiter.set_result(None)

    for future in futures:
        if not future.done():
            future.add_done_callback(one_done)
    try:
        await waiter
    finally:
        if not waiter.done():
            for future in futures:
                future.remove_done_callback(one_done)


def _consume(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


def publisher_from_settings(settings: Settings) -> Publisher:
    """The bus the settings name: Kafka, or Kinesis (INGEST_SINK=kinesis; docs/aws.md)."""
    if settings.ingest_sink == "kinesis":
        from clickstream_common.settings import KinesisSettings
        from ingest_api.kinesis_publisher import KinesisPublisher  # the AWS SDK only if used

        return KinesisPublisher(KinesisSettings(), settings.ingest_publish_timeout_seconds)
    return KafkaPublisher(
        settings.kafka_bootstrap_servers,
        settings.ingest_publish_timeout_seconds,
        settings.kafka_events_topic,
        settings.kafka_dead_letter_topic,
        linger_ms=settings.ingest_kafka_linger_ms,
        client_options=aiokafka_options(settings),
    )
