"""Which bus the collector publishes to (INGEST_SINK): Kafka, or Kinesis Data Streams."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from clickstream_common.settings import KinesisSettings
from ingest_api.config import Settings
from ingest_api.publisher import KafkaPublisher, Records


class EventBus(Protocol):
    """What the collector needs of a publisher (both implementations have it)."""

    ready: bool

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def check(self) -> bool: ...

    async def publish(self, batches: Sequence[tuple[str, Records]]) -> None: ...


def make_publisher(settings: Settings) -> EventBus:
    if settings.ingest_sink == "kinesis":
        from ingest_api.kinesis_publisher import KinesisPublisher  # the SDK only when used

        kinesis = KinesisSettings()
        return KinesisPublisher(
            kinesis,
            {
                settings.kafka_events_topic: kinesis.kinesis_stream_name,
                settings.kafka_dead_letter_topic: kinesis.kinesis_dead_letter_stream_name,
            },
            settings.ingest_publish_timeout_seconds,
        )
    return KafkaPublisher(
        settings.kafka_bootstrap_servers,
        settings.ingest_publish_timeout_seconds,
        linger_ms=settings.ingest_kafka_linger_ms,
    )
