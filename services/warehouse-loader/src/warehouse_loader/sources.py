"""Where S3 object-created notifications come from: a Kafka topic or an SQS queue.

Both hand out `Delivery`s and acknowledge them only when told to, after every marker they
announce is in the warehouse; an unacknowledged delivery comes back (Kafka: from the last
committed offset after a restart or rebalance; SQS: after the visibility timeout).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from clickstream_common.kafka_security import aiokafka_options
from warehouse_loader.config import NotificationSource, Settings
from warehouse_loader.notifications import MarkerNotice, markers_in

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    """One message: the markers it announces, what it skipped, and how to acknowledge it."""

    notices: list[MarkerNotice]
    skipped: Counter[str] = field(default_factory=Counter)
    handle: Any = None


class Source(Protocol):
    async def start(self) -> None: ...

    async def receive(self) -> list[Delivery]: ...

    async def ack(self, deliveries: list[Delivery]) -> None: ...

    async def pending(self) -> int | None: ...

    async def stop(self) -> None: ...


class KafkaSource:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            self.settings.loader_notifications_topic,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.settings.loader_consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # A load waiting out a warehouse outage must not cost the partitions.
            max_poll_interval_ms=30 * 60 * 1000,
            **aiokafka_options(self.settings),
        )
        await self.consumer.start()

    async def receive(self) -> list[Delivery]:
        assert self.consumer is not None
        batches = await self.consumer.getmany(timeout_ms=500, max_records=100)
        deliveries = []
        for tp, records in batches.items():
            for record in records:
                notices, skipped = markers_in(record.value or b"", self.settings.s3_bucket)
                deliveries.append(Delivery(notices, skipped, (tp, record.offset)))
        return deliveries

    async def ack(self, deliveries: list[Delivery]) -> None:
        assert self.consumer is not None
        offsets: dict[TopicPartition, int] = {}
        for delivery in deliveries:
            tp, offset = delivery.handle
            offsets[tp] = max(offsets.get(tp, 0), offset + 1)
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # Partitions moved to another replica: it replays them, the ledger skips them.
            log.warning("offset commit failed", extra={"error": repr(exc)})

    async def pending(self) -> int | None:
        assert self.consumer is not None
        total = 0
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is None:
                continue
            total += max(high - await self.consumer.position(tp), 0)
        return total

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()


class SqsSource:
    def __init__(self, settings: Settings) -> None:
        if not settings.loader_sqs_queue_url:
            raise ValueError("LOADER_SQS_QUEUE_URL is required for the sqs source")
        self.settings = settings
        self.queue_url = settings.loader_sqs_queue_url
        secret = settings.aws_secret_access_key
        self.client: Any = boto3.client(
            "sqs",
            endpoint_url=settings.loader_sqs_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.aws_access_key_id,
            aws_secret_access_key=secret.get_secret_value() if secret else None,
        )

    async def start(self) -> None:
        await asyncio.to_thread(self.client.get_queue_attributes, QueueUrl=self.queue_url)

    async def receive(self) -> list[Delivery]:
        answer = await asyncio.to_thread(
            self.client.receive_message,
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self.settings.loader_sqs_wait_seconds,
            VisibilityTimeout=self.settings.loader_sqs_visibility_timeout_seconds,
        )
        deliveries = []
        for message in answer.get("Messages", []):
            notices, skipped = markers_in(message["Body"].encode(), self.settings.s3_bucket)
            deliveries.append(Delivery(notices, skipped, message["ReceiptHandle"]))
        return deliveries

    async def ack(self, deliveries: list[Delivery]) -> None:
        handles = [d.handle for d in deliveries]
        for start in range(0, len(handles), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": h}
                for i, h in enumerate(handles[start : start + 10])
            ]
            answer = await asyncio.to_thread(
                self.client.delete_message_batch, QueueUrl=self.queue_url, Entries=entries
            )
            for failed in answer.get("Failed", []):
                # Comes back after the visibility timeout; the ledger makes it a no-op.
                log.warning("notification not deleted", extra={"error": failed})

    async def pending(self) -> int | None:
        answer = await asyncio.to_thread(
            self.client.get_queue_attributes,
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        attributes = answer.get("Attributes", {})
        return sum(int(v) for v in attributes.values())

    async def stop(self) -> None:
        return None


def make_source(settings: Settings) -> Source:
    if settings.loader_notifications_source is NotificationSource.SQS:
        return SqsSource(settings)
    return KafkaSource(settings)
