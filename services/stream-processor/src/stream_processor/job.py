"""The streaming job: Kafka -> raw zone, and Kafka -> parsed events -> windowed aggregates."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

import boto3
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from clickstream_common.logs import configure_logging
from clickstream_common.probes import ProbeServer
from clickstream_common.tables import EVENT_COUNTS_MINUTE
from stream_processor import transforms
from stream_processor.config import Settings
from stream_processor.metrics import PrometheusListener
from stream_processor.session import build_session
from stream_processor.sinks import LakeWriter

log = logging.getLogger(__name__)


def s3_client(settings: Settings) -> object:
    secret = settings.aws_secret_access_key
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
    )


def kafka_stream(spark: SparkSession, settings: Settings) -> DataFrame:
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
        .option("subscribe", settings.kafka_events_topic)
        .option("startingOffsets", settings.processor_starting_offsets)
        .option("maxOffsetsPerTrigger", settings.processor_max_offsets_per_trigger)
        .option("failOnDataLoss", "true")
        .load()
    )


def start_queries(
    spark: SparkSession, settings: Settings, writer: LakeWriter
) -> list[StreamingQuery]:
    checkpoints = settings.processor_checkpoint_location.rstrip("/")
    trigger = settings.processor_trigger_interval

    def raw_batch(df: DataFrame, batch_id: int) -> None:
        writer.write_raw(df, batch_id)

    raw = (
        transforms.raw_zone(kafka_stream(spark, settings))
        .writeStream.queryName("raw_zone")
        .option("checkpointLocation", f"{checkpoints}/raw_zone")
        .trigger(processingTime=trigger)
        .foreachBatch(raw_batch)
        .start()
    )

    def counts_batch(df: DataFrame, batch_id: int) -> None:
        writer.write_processed(
            EVENT_COUNTS_MINUTE.name,
            transforms.with_batch_id(df, batch_id),
            batch_id,
            "window_start",
        )

    events = transforms.parse_events(kafka_stream(spark, settings)).where("is_valid")
    counts = (
        transforms.event_counts_minute(
            events.withWatermark("event_time", settings.processor_watermark_delay)
        )
        .writeStream.queryName(EVENT_COUNTS_MINUTE.name)
        .outputMode("update")
        .option("checkpointLocation", f"{checkpoints}/{EVENT_COUNTS_MINUTE.name}")
        .trigger(processingTime=trigger)
        .foreachBatch(counts_batch)
        .start()
    )
    return [raw, counts]


def run() -> None:
    settings = Settings()
    configure_logging("stream-processor", settings.log_level)
    spark = build_session(settings)
    spark.streams.addListener(PrometheusListener())
    writer = LakeWriter(s3_client(settings), settings.s3_bucket)
    queries = start_queries(spark, settings, writer)
    probe = ProbeServer(
        settings.processor_metrics_host,
        settings.processor_metrics_port,
        ready=lambda: all(q.isActive for q in queries),
    ).start()
    log.info("streaming queries started", extra={"queries": [q.name for q in queries]})

    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    handler: Callable[[int, FrameType | None], None] = stop
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    try:
        while not stopping.is_set():
            for query in queries:
                if not query.isActive:
                    # A failed query must fail the process, so the supervisor restarts it.
                    raise RuntimeError(f"query {query.name} stopped: {query.exception()}")
            stopping.wait(1.0)
    finally:
        for query in queries:
            if query.isActive:
                query.stop()
        probe.stop()
        spark.stop()
