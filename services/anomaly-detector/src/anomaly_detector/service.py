"""The detector process: events and dead letters from Kafka -> per-minute buckets -> models
-> anomalies to a Kafka topic, to the lake (analytics.anomalies) and to Prometheus.

It runs beside the Spark job, not inside it: the job's windows are final only after its
2-minute watermark, which alone would spend most of the 3-minute detection budget, and they
carry neither the source nor the rejected records. The detector keeps a few kilobytes of
state per series and restarts in a second, independently of the job's checkpoint.

Exactly where it left off: a checkpoint in S3 holds the consumed offsets, the open buckets
and every model; it is written after each closed bucket, and a restart seeks to its offsets.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from botocore.exceptions import ClientError

from anomaly_detector import metrics
from anomaly_detector.config import Settings
from anomaly_detector.models import Detector, Tuning, Verdict
from anomaly_detector.output import anomaly_record, lake_table
from anomaly_detector.series import (
    MinuteAggregator,
    Observation,
    aggregator_state,
    observation_from_dead_letter,
    observation_from_event,
    restore_aggregator,
)
from clickstream_common.lake_writer import DatasetWriter
from clickstream_common.logs import configure_logging
from clickstream_common.probes import ProbeServer, run_until_stopped
from clickstream_common.tables import ANOMALIES

log = logging.getLogger(__name__)
MODEL = "seasonal"


def observation_of(
    topic: str, value: bytes | None, settings: Settings, kafka_ms: int
) -> Observation:
    """Any record of the two topics: an event, or a rejection (dead letter, unreadable)."""
    fallback = datetime.fromtimestamp(kafka_ms / 1000, UTC)
    try:
        record = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        return observation_from_dead_letter({}, fallback)
    if topic == settings.kafka_dead_letter_topic:
        return observation_from_dead_letter(record, fallback)
    return observation_from_event(record) or observation_from_dead_letter(record, fallback)


class DetectorService:
    def __init__(self, settings: Settings, s3: Any | None = None) -> None:
        self.settings = settings
        self.tuning = Tuning(
            window=settings.anomaly_window,
            min_history=settings.anomaly_min_history,
            threshold=settings.anomaly_threshold,
            bucket_seconds=settings.anomaly_bucket_seconds,
        )
        self.width = timedelta(seconds=settings.anomaly_bucket_seconds)
        self.aggregator = MinuteAggregator(
            settings.anomaly_bucket_seconds, settings.anomaly_grace_seconds
        )
        self.detector = Detector(MODEL, self.tuning)
        self.s3 = s3 if s3 is not None else settings.s3_client()
        self.offsets: dict[str, int] = {}  # "topic:partition" -> next offset
        # Newest received_at read per partition: while a partition still has records to read,
        # the watermark waits for it (a replay reads partitions unevenly; a bucket must not
        # close before every partition's records for it are in).
        self.partition_times: dict[str, datetime] = {}
        self.stopping = asyncio.Event()
        self.ready = False

    # --- checkpoint ---------------------------------------------------------------------

    def load_checkpoint(self) -> bool:
        try:
            body = self.s3.get_object(
                Bucket=self.settings.s3_bucket, Key=self.settings.anomaly_checkpoint_key
            )["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise
        state = orjson.loads(body)
        self.offsets = {k: int(v) for k, v in state["offsets"].items()}
        restore_aggregator(self.aggregator, state["aggregator"])
        self.detector.restore(state["models"])
        log.info("checkpoint restored", extra={"partitions": len(self.offsets)})
        return True

    def save_checkpoint(self) -> None:
        state = {
            "offsets": self.offsets,
            "aggregator": aggregator_state(self.aggregator),
            "models": self.detector.state(),
            "saved_at": datetime.now(UTC).isoformat(),
        }
        self.s3.put_object(
            Bucket=self.settings.s3_bucket,
            Key=self.settings.anomaly_checkpoint_key,
            Body=orjson.dumps(state),
            ContentType="application/json",
        )

    # --- closing buckets ----------------------------------------------------------------

    def close_buckets(self) -> list[dict[str, Any]]:
        """Score every bucket the watermark passed; returns the anomalies found."""
        found: list[dict[str, Any]] = []
        now = datetime.now(UTC)
        for bucket in self.aggregator.close_ready():
            verdicts = self.detector.observe(bucket.start, bucket.points(self.aggregator.sources))
            metrics.BUCKETS.inc()
            metrics.LAST_BUCKET_END.set((bucket.start + self.width).timestamp())
            recent = (now - bucket.start - self.width).total_seconds() <= (
                self.settings.anomaly_alert_max_age_seconds
            )
            for verdict in verdicts:
                self._export(verdict, recent)
                if verdict.anomalous:
                    found.append(anomaly_record(verdict, self.width, MODEL, now))
        return found

    def _export(self, verdict: Verdict, recent: bool) -> None:
        metrics.SCORE.labels(verdict.series).set(verdict.score)
        metrics.ACTIVE.labels(verdict.series).set(1 if verdict.anomalous and recent else 0)
        if verdict.anomalous:
            metrics.DETECTED.labels(verdict.series).inc()
            log.warning(
                "anomaly",
                extra={
                    "series": verdict.series,
                    "window_start": verdict.start.isoformat(),
                    "observed": verdict.observed,
                    "expected": round(verdict.expected, 3),
                    "score": round(verdict.score, 2),
                },
            )

    def write_lake(self, anomalies: list[dict[str, Any]]) -> None:
        if not anomalies or not self.settings.anomaly_write_lake:
            return
        # The batch id is the newest bucket's start (unix seconds): increasing, and the same
        # when a restart scores the same buckets again, so the objects are overwritten.
        newest = max(datetime.fromisoformat(a["window_start"]) for a in anomalies)
        batch_id = int(newest.timestamp())
        DatasetWriter(self.s3, self.settings.s3_bucket).write_table(
            ANOMALIES.name,
            lake_table(anomalies, batch_id),
            batch_id,
            ANOMALIES.time_column,
        )

    # --- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        settings = self.settings
        topics = (settings.kafka_events_topic, settings.kafka_dead_letter_topic)
        restored = await asyncio.to_thread(self.load_checkpoint)
        # Every partition of both topics, assigned (one detector holds the global models):
        # positions come from the checkpoint, not from a group rebalance.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.anomaly_consumer_group,
            enable_auto_commit=False,
            auto_offset_reset=settings.anomaly_starting_offsets,
            max_poll_records=5000,
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=True,
        )
        await consumer.start()
        await producer.start()
        try:
            await self._assign(consumer, producer, topics, restored)
            self.ready = True
            metrics.READY.set(1)
            while not self.stopping.is_set():
                await self.step(consumer, producer)
        finally:
            self.ready = False
            metrics.READY.set(0)
            await consumer.stop()
            await producer.stop()

    async def step(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        """Read what is there, close what is due, publish, checkpoint."""
        settings = self.settings
        batches = await consumer.getmany(timeout_ms=500, max_records=5000)
        for tp, records in batches.items():
            key = _key(tp)
            for record in records:
                obs = observation_of(tp.topic, record.value, settings, record.timestamp)
                before = self.aggregator.late
                self.aggregator.add(obs, advance=False)
                if self.aggregator.late != before:
                    metrics.LATE.inc()
                self.offsets[key] = record.offset + 1
                newest = self.partition_times.get(key)
                if newest is None or obs.received_at > newest:
                    self.partition_times[key] = obs.received_at
            metrics.RECORDS.labels(tp.topic).inc(len(records))
        if not batches and await self._caught_up(consumer):
            # Nothing left to read: the clock moves the watermark, so a stream that stops
            # entirely still closes its buckets (as zeros).
            self.aggregator.advance(datetime.now(UTC))
        elif (mark := self.watermark_of(consumer)) is not None:
            self.aggregator.advance(mark)
        closed_before = self.aggregator.closed_until
        anomalies = self.close_buckets()
        for item in anomalies:
            await producer.send(
                settings.anomaly_topic, orjson.dumps(item), key=item["series"].encode()
            )
        if anomalies:
            await producer.flush()
            await asyncio.to_thread(self.write_lake, anomalies)
        if self.aggregator.closed_until != closed_before:
            await asyncio.to_thread(self.save_checkpoint)
            # Also in Kafka, so consumer lag is visible to the usual tools.
            await consumer.commit({_partition(k): v for k, v in self.offsets.items()})

    async def _assign(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        topics: tuple[str, ...],
        restored: bool,
    ) -> None:
        partitions = []
        for topic in topics:
            # The producer's metadata request names the topic (the consumer's does not).
            found = await asyncio.wait_for(producer.partitions_for(topic), timeout=60)
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        for tp in partitions:
            offset = self.offsets.get(_key(tp)) if restored else None
            if offset is not None:
                consumer.seek(tp, offset)
            elif (committed := await consumer.committed(tp)) is not None:
                consumer.seek(tp, committed)
            elif self.settings.anomaly_starting_offsets == "latest":
                await consumer.seek_to_end(tp)
            else:
                await consumer.seek_to_beginning(tp)

    def watermark_of(self, consumer: AIOKafkaConsumer) -> datetime | None:
        """The newest time every partition has reached: the slowest of the partitions that
        still have records to read (all of them when none has); None while a partition with
        records to read has delivered none yet."""
        behind: list[datetime] = []
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            key = _key(tp)
            if end is not None and self.offsets.get(key, 0) >= end:
                continue  # read to its end
            if end is None and key not in self.partition_times:
                continue  # nothing fetched yet, nothing known to be there
            newest = self.partition_times.get(key)
            if newest is None:
                return None
            behind.append(newest)
        if behind:
            return min(behind)
        return max(self.partition_times.values(), default=None)

    async def _caught_up(self, consumer: AIOKafkaConsumer) -> bool:
        assigned = list(consumer.assignment())
        if not assigned:
            return False
        ends = await consumer.end_offsets(assigned)
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return False
        return True


def _key(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


def _partition(key: str) -> TopicPartition:
    topic, _, partition = key.rpartition(":")
    return TopicPartition(topic, int(partition))


def run() -> None:
    settings = Settings()
    configure_logging("anomaly-detector", settings.log_level)
    service = DetectorService(settings)
    probe = ProbeServer(
        settings.anomaly_metrics_host, settings.anomaly_metrics_port, ready=lambda: service.ready
    ).start()

    run_until_stopped(service.run, service.stopping.set, probe)
