"""The streaming job: one read of the bus, three queries.

* `lake` (stateless): the only reader of the bus (Kafka or Kinesis). Every record to the raw
  zone; one JSON read per record; valid events to the `events` data set, rejected records to
  errors/.
* `windows` (stateful, update mode): reads the committed `events` batches back
  (`lake_events_source`, columnar), dedup within the watermark, then one aggregation that
  feeds event_counts_minute, active_users_5m, page_views_minute and product_stats_minute.
* `sessions` (stateful, append mode): the same input, session windows per user, emitted once
  closed.

Each query's checkpoint holds its offsets (the lake's: the bus's; the stateful ones': lake
batch ids) and state. The executors write a batch's objects, each named after the batch id
and its Spark partition (`executor_writes`); the driver collects a row per object and writes
each data set's commit marker last, so a batch that runs again after a crash rewrites the
same objects with the same content, and no batch's rows pass through the driver.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.query import StreamingQuery

from clickstream_common.kafka_security import spark_kafka_options
from clickstream_common.logs import configure_logging
from clickstream_common.probes import ProbeServer
from clickstream_common.schema import DEFAULT_CLOCK_POLICY, ClockPolicy
from clickstream_common.tables import ACTIVE_USERS_5M, EVENTS, IDENTITIES, SESSIONS
from stream_processor import executor_writes, metrics, transforms
from stream_processor.config import Settings
from stream_processor.executor_writes import S3Target
from stream_processor.kafka_check import wait_for_kafka
from stream_processor.kinesis_source import kinesis_stream
from stream_processor.lake_events_source import end_offsets, lake_events_stream
from stream_processor.live_figures import LiveFigures
from stream_processor.progress import BatchProgress, batch_progress
from stream_processor.sinks import LakeWriter
from stream_processor.spark_setup import build_session

log = logging.getLogger(__name__)

LAKE, WINDOWS, SESSIONS_QUERY = "lake", "windows", "sessions"
# Fair-scheduler weights: when the queries' batches overlap on few cores, the lake and the
# windows (the fresh numbers) get twice the task slots of sessions, which are written only a
# gap after they end anyway.
POOL_WEIGHTS = {LAKE: 2, WINDOWS: 2, SESSIONS_QUERY: 1}


def kafka_stream(spark: SparkSession, settings: Settings) -> DataFrame:
    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
        .option("subscribe", settings.kafka_events_topic)
        .option("startingOffsets", settings.processor_starting_offsets)
        # Bounds the records; with the largest record size, the bytes (Settings).
        .option("maxOffsetsPerTrigger", settings.records_per_trigger)
        .option("failOnDataLoss", "true")
        .options(**spark_kafka_options(settings))
        .load()
    )


def source_stream(spark: SparkSession, settings: Settings) -> DataFrame:
    """The events, from the bus PROCESSOR_SOURCE names, in the Kafka source's columns."""
    if settings.processor_source == "kinesis":
        secret = settings.aws_secret_access_key
        keys = settings.aws_access_key_id
        return kinesis_stream(
            spark,
            settings,
            settings.processor_starting_offsets,
            settings.records_per_trigger,
            (keys, secret.get_secret_value()) if keys and secret else None,
            max_bytes_per_trigger=settings.max_batch_bytes,
        )
    return kafka_stream(spark, settings)


def _freshness(query: str, newest: datetime | None) -> None:
    if newest is not None:
        metrics.FRESHNESS.labels(query).observe((datetime.now(UTC) - newest).total_seconds())


class BatchWriters:
    """The foreachBatch functions: the executors write each batch's objects
    (`executor_writes`), the driver collects what they wrote (a few rows per object) and
    writes each data set's commit marker, last."""

    def __init__(
        self,
        writer: LakeWriter,
        target: S3Target,
        progress: Callable[[str, int], BatchProgress] | None = None,
        clock: ClockPolicy = DEFAULT_CLOCK_POLICY,
        identity_partitions: int = 2,
    ) -> None:
        self.writer = writer
        self.target = target
        self.clock = clock
        # Fixed per deployment, like the shuffle partitions: the identities objects of a
        # batch that runs again get the same names.
        self.identity_partitions = identity_partitions
        self.live = LiveFigures()
        # The watermark and input offsets Spark recorded for a query's batch: the commit
        # markers carry them for the late-data correction pass (stream_processor.correction).
        self.progress = progress or (lambda query, batch_id: BatchProgress(None, None))

    def lake(self, records: DataFrame, batch_id: int) -> None:
        # One read of the records from Kafka, parsed once; each partition writes its raw
        # records, errors and events and yields its identity links, kept (small) for the
        # shuffle by anonymous id that writes the identities.
        out = transforms.lake_batch(records, self.clock).mapInArrow(
            executor_writes.lake_partition_writer(self.target, batch_id),
            executor_writes.spark_schema(executor_writes.LAKE_SCHEMA),
        )
        out = out.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            kind = F.col("kind")
            summary = out.where(kind != executor_writes.LINK).toArrow()
            written = executor_writes.Written.of(summary)
            newest = written.newest_of([EVENTS.name])
            events = written.objects.get(EVENTS.name)
            if events:
                # Committed before the identities' shuffle job: the windows and sessions
                # queries read this batch's events as soon as its marker is there.
                offsets = self.progress(LAKE, batch_id).source_offsets
                self.writer.commit(EVENTS.name, batch_id, events, newest, source_offsets=offsets)
            _freshness(LAKE, newest)
            for reason, count in executor_writes.error_counts(summary).items():
                metrics.ERROR_RECORDS.labels(reason).inc(count)
            if executor_writes.link_count(summary):
                links = out.where(kind == executor_writes.LINK).select(
                    *executor_writes.LINK_COLUMNS
                )
                identity_summary = (
                    links.repartition(self.identity_partitions, "anonymous_id")
                    .mapInArrow(
                        executor_writes.identities_partition_writer(self.target, batch_id),
                        executor_writes.spark_schema(executor_writes.OBJECTS_SCHEMA),
                    )
                    .toArrow()
                )
                linked = executor_writes.Written.of(identity_summary).objects.get(IDENTITIES.name)
                if linked:
                    self.writer.commit(IDENTITIES.name, batch_id, linked, newest)
        finally:
            out.unpersist()

    def windows(self, aggregates: DataFrame, batch_id: int) -> None:
        # One pass over the update-mode output (the state is touched once).
        summary = (
            transforms.window_rows(aggregates)
            .mapInArrow(
                executor_writes.windows_partition_writer(self.target, batch_id),
                executor_writes.spark_schema(executor_writes.WINDOWS_SCHEMA),
            )
            .toArrow()
        )
        progress = self.progress(WINDOWS, batch_id)
        written = executor_writes.Written.of(summary)
        if not written.objects:
            # Still a marker (without objects) for its watermark and offsets: the correction
            # pass bounds the watermark each event met by the first batch that read past it.
            self.writer.commit(
                ACTIVE_USERS_5M.name,
                batch_id,
                [],
                watermark=progress.watermark,
                source_offsets=progress.source_offsets,
            )
            return
        newest = written.newest_of(written.objects)
        for spec in transforms.WINDOW_DATASETS:
            objects = written.objects.get(spec.name)
            if not objects:
                continue
            self.writer.commit(
                spec.name,
                batch_id,
                objects,
                newest,
                watermark=progress.watermark,
                source_offsets=progress.source_offsets,
            )
        _freshness(WINDOWS, newest)
        self.live.observe(
            executor_writes.live_rows(summary, executor_writes.LIVE_ACTIVE),
            executor_writes.live_rows(summary, executor_writes.LIVE_PRODUCT),
        )

    def sessions(self, closed: DataFrame, batch_id: int) -> None:
        summary = closed.mapInArrow(
            executor_writes.dataset_partition_writer(self.target, batch_id, SESSIONS),
            executor_writes.spark_schema(executor_writes.OBJECTS_SCHEMA),
        ).toArrow()
        written = executor_writes.Written.of(summary)
        progress = self.progress(SESSIONS_QUERY, batch_id)
        # No freshness sample: a session is written by design only a gap after its end. A
        # batch that closes no session still commits an empty marker for its watermark and
        # offsets (the correction pass reads them).
        self.writer.commit(
            SESSIONS.name,
            batch_id,
            written.objects.get(SESSIONS.name, []),
            written.newest_of([SESSIONS.name]),
            watermark=progress.watermark,
            source_offsets=progress.source_offsets,
        )


def query_starters(
    spark: SparkSession, settings: Settings, writer: LakeWriter
) -> dict[str, Callable[[], StreamingQuery]]:
    """Per query, a function that starts it (again: from its checkpoint)."""
    checkpoints = settings.processor_checkpoint_location.rstrip("/")
    trigger = settings.processor_trigger_interval
    target = S3Target.of(settings)

    def progress(query: str, batch_id: int) -> BatchProgress:
        recorded = batch_progress(spark, f"{checkpoints}/{query}", batch_id)
        if recorded.lake_batch is None:
            return recorded
        # A stateful query read the lake up to batch N: its input ended where N's did.
        offsets = end_offsets(writer.s3, writer.bucket, recorded.lake_batch)
        return BatchProgress(recorded.watermark, offsets, recorded.lake_batch)

    batches = BatchWriters(
        writer,
        target,
        progress,
        settings.clock_policy,
        settings.processor_shuffle_partitions,
    )
    context = spark.sparkContext

    def start(
        name: str, frame: DataFrame, mode: str, interval: str, fn: Callable[..., None]
    ) -> StreamingQuery:
        # Each query's jobs go to a fair-scheduler pool of its own (inherited by its thread).
        context.setLocalProperty("spark.scheduler.pool", name)
        try:
            return (
                frame.writeStream.queryName(name)
                .outputMode(mode)
                .option("checkpointLocation", f"{checkpoints}/{name}")
                .trigger(processingTime=interval)
                .foreachBatch(fn)
                .start()
            )
        finally:
            context.setLocalProperty("spark.scheduler.pool", None)  # type: ignore[arg-type]

    def stateful_input(rows_per_trigger: int) -> DataFrame:
        # The lake's committed events, read back: the bus is read and parsed once, by `lake`.
        events = lake_events_stream(
            spark,
            target,
            settings.processor_starting_offsets,
            rows_per_trigger,
            settings.processor_shuffle_partitions,
        )
        return transforms.without_bots(
            transforms.deduplicate(events, settings.processor_watermark_delay),
            settings.processor_exclude_bots,
        )

    lake = source_stream(spark, settings)
    windows = transforms.window_aggregates(stateful_input(settings.records_per_trigger))
    sessions = transforms.sessions(
        stateful_input(settings.sessions_rows_per_trigger), settings.processor_session_gap
    )
    return {
        LAKE: lambda: start(LAKE, lake, "append", trigger, batches.lake),
        WINDOWS: lambda: start(WINDOWS, windows, "update", trigger, batches.windows),
        SESSIONS_QUERY: lambda: start(
            SESSIONS_QUERY,
            sessions,
            "append",
            settings.processor_sessions_trigger_interval,
            batches.sessions,
        ),
    }


# Spark gives a Python worker (e.g. the Kinesis source's planner) 10 s to start and connect
# back, a limit it hard-codes; on a CPU-starved machine an interpreter can take longer. The
# query is then restarted from its checkpoint (exactly once as ever), a few times at most.
TRANSIENT_FAILURES = ("Python worker failed to connect back",)
MAX_RESTARTS = 5


def restartable(query: StreamingQuery, restarts: int) -> bool:
    error = query.exception()
    return (
        error is not None
        and restarts < MAX_RESTARTS
        and any(text in str(error) for text in TRANSIENT_FAILURES)
    )


def run() -> None:
    settings = Settings()
    configure_logging("stream-processor", settings.log_level)
    # py4j logs every callback connection at INFO.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    spark = build_session(settings, POOL_WEIGHTS)
    spark.streams.addListener(metrics.PrometheusListener())
    writer = LakeWriter(settings.s3_client(), settings.s3_bucket)
    queries: list[StreamingQuery] = []
    # Up (not ready) before Kafka is: a broker that refuses the credentials keeps the probe
    # at 503 with the reason in the log, rather than failing queries and restarting.
    starters = query_starters(spark, settings, writer)
    restarts = dict.fromkeys(starters, 0)
    probe = ProbeServer(
        settings.processor_metrics_host,
        settings.processor_metrics_port,
        ready=lambda: bool(queries) and all(q.isActive for q in queries),
    ).start()

    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    handler: Callable[[int, FrameType | None], None] = stop
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    # With Kinesis as the bus there is no Kafka to wait for (the source's planner reports an
    # unreachable stream by failing its query).
    if settings.processor_source == "kinesis" or wait_for_kafka(spark, settings, stopping):
        queries += [start() for start in starters.values()]
        log.info("streaming queries started", extra={"queries": [q.name for q in queries]})
    try:
        while not stopping.is_set():
            for i, query in enumerate(queries):
                if not query.isActive:
                    if restartable(query, restarts[query.name]):
                        restarts[query.name] += 1
                        log.warning(
                            "query failed to start its Python worker; restarting it",
                            extra={"query": query.name, "restarts": restarts[query.name]},
                        )
                        queries[i] = starters[query.name]()
                        continue
                    # A failed query must fail the process, so the supervisor restarts it.
                    raise RuntimeError(f"query {query.name} stopped: {query.exception()}")
            stopping.wait(1.0)
    finally:
        for query in queries:
            if query.isActive:
                query.stop()
        probe.stop()
        spark.stop()
