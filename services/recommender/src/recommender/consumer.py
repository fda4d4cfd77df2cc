"""The events topic -> the state in Redis, under the service's own consumer group.

Positions live in Redis beside the state they produced (the Lua script writes both in one
step). On an assignment the consumer seeks to them; a partition Redis knows nothing about
(a first start, or a Redis that lost its data) is read from `recommender_rebuild_hours` ago,
which rebuilds the trending scores, co-occurrences and histories from the topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from recommender import metrics
from recommender.config import Settings
from recommender.state import State, event_row

log = logging.getLogger(__name__)


def partition_key(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


class _SeekToState(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: AIOKafkaConsumer, state: State, settings: Settings) -> None:
        self.consumer = consumer
        self.state = state
        self.settings = settings

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        saved = await self.state.offsets()
        rebuild: list[TopicPartition] = []
        for tp in assigned:
            offset = saved.get(partition_key(tp))
            if offset is not None:
                self.consumer.seek(tp, offset)
            else:
                rebuild.append(tp)
        if rebuild:
            since_ms = int((time.time() - self.settings.recommender_rebuild_hours * 3600) * 1000)
            found = await self.consumer.offsets_for_times({tp: since_ms for tp in rebuild})
            # Nothing that recent (or nothing at all): start at the end as it is now, an
            # explicit offset. seek_to_end would be resolved at the next fetch and skip what
            # arrives in between.
            ends = await self.consumer.end_offsets(rebuild)
            for tp in rebuild:
                position = found.get(tp)
                self.consumer.seek(tp, ends[tp] if position is None else position.offset)
            log.info("rebuilding state from the topic", extra={"partitions": len(rebuild)})


class EventConsumer:
    def __init__(self, settings: Settings, state: State) -> None:
        self.settings = settings
        self.state = state
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.recommender_consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self.running = False
        self.last_applied = 0.0

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe(
            [self.settings.kafka_events_topic],
            listener=_SeekToState(self.consumer, self.state, self.settings),
        )
        self.running = True

    async def stop(self) -> None:
        self.running = False
        await self.consumer.stop()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.step()
            except Exception:
                metrics.CONSUMER_ERRORS.inc()
                log.exception("applying a batch failed; retrying")
                await asyncio.sleep(1)

    async def step(self) -> int:
        batches = await self.consumer.getmany(
            timeout_ms=200, max_records=self.settings.recommender_batch_records
        )
        rows: list[list[Any]] = []
        offsets: dict[str, int] = {}
        for tp, records in batches.items():
            key = partition_key(tp)
            for record in records:
                try:
                    event = orjson.loads(record.value or b"")
                except orjson.JSONDecodeError:
                    event = None
                if isinstance(event, dict) and (row := event_row(event, key, record.offset)):
                    rows.append(row)
            if records:
                offsets[key] = records[-1].offset + 1
            metrics.RECORDS.inc(len(records))
        if not offsets:
            return 0
        applied = await self.state.apply(rows, offsets)
        metrics.APPLIED.inc(applied)
        self.last_applied = time.time()
        newest = max((row[0] for row in rows), default=None)
        if newest is not None:
            metrics.LAG.set(max(time.time() - newest, 0.0))
        # For the usual lag tools; positions that count are those in Redis.
        await self.consumer.commit({TopicPartition(*_split(k)): v for k, v in offsets.items()})
        return applied


def _split(key: str) -> tuple[str, int]:
    topic, _, partition = key.rpartition(":")
    return topic, int(partition)
