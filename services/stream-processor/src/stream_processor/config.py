"""Settings from the environment; the Helm chart sets the same names."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from clickstream_common.bus import BUS_MAX_RECORD_BYTES, max_record_bytes
from clickstream_common.schema import DEFAULT_CLOCK_POLICY, ClockPolicy
from clickstream_common.settings import CommonSettings, KinesisSettings, S3Settings

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def interval_seconds(text: str) -> float:
    """Seconds of a Spark interval string such as "2 minutes" or "30 seconds"."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(second|minute|hour|day)s?\s*", text.lower())
    if match is None:
        raise ValueError(f"not an interval of seconds, minutes, hours or days: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def interval(text: str) -> timedelta:
    """A Spark interval string of one unit ('30 minutes', '2 hours') as a timedelta."""
    return timedelta(seconds=interval_seconds(text))


_SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}

# Bytes a lake batch holds in Arrow per byte of records read: the original value and the
# event columns parsed from it (the free-form properties and context again as JSON text),
# plus Arrow's offsets. Measured with 32 KB events (tests/processor/test_batch_bytes.py) when
# the driver collected each batch; the executors now hold it, a Spark partition at a time in
# a Python worker, and the default batch bound is still derived with it.
RESULT_BYTES_PER_RECORD_BYTE = 2


def size_bytes(text: str, default_unit: str = "") -> int:
    """Bytes of a JVM/Spark size string such as "512m", "2g" or "1048576" (no unit:
    `default_unit`, as Spark reads spark.driver.memory in MiB and maxResultSize in bytes)."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)b?\s*", text.lower())
    if match is None:
        raise ValueError(f"not a size such as 512m or 2g: {text!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2) or default_unit]


class Settings(CommonSettings, S3Settings, KinesisSettings):
    # spark.master: local[N], or k8s://... (the chart).
    processor_spark_master: str = "local[2]"
    # Comma-separated jar paths (spark.jars): the Kafka connector, hadoop-aws, the AWS SDK.
    processor_spark_jars: str = ""
    # Checkpoints of the queries: a volume path or s3a://...; must be durable.
    processor_checkpoint_location: str = "/tmp/clickstream/checkpoints"  # noqa: S108
    # How late an event may be and still count in windows and sessions (later ones reach the
    # aggregates through the correction pass). 2 minutes: the smallest round value above the
    # clock bound; state grows by ~2 rows per event of delay per query (docs/benchmarks.md).
    processor_watermark_delay: str = "2 minutes"
    # The clock policy (clickstream_common.schema.ClockPolicy), applied again before the
    # watermark to records from any producer: how far ahead of its receive time (never later
    # than the bus's record time) an event time may be; further, it becomes that time. Must
    # stay below PROCESSOR_WATERMARK_DELAY.
    processor_clock_max_ahead_seconds: float = Field(
        default=DEFAULT_CLOCK_POLICY.max_ahead.total_seconds(), ge=0
    )
    # The same, for an event time behind its receive time.
    processor_clock_max_behind_seconds: float = Field(
        default=DEFAULT_CLOCK_POLICY.max_behind.total_seconds(), ge=0
    )
    # Micro-batch interval of the lake and windows queries. 2 s rather than 5: in the
    # benchmark it took freshness p95 from 9.2 to 6.0 s (events) and 10.6 to 7.2 s (windows)
    # at no cost in throughput (docs/benchmarks.md).
    processor_trigger_interval: str = "2 seconds"
    # Micro-batch interval of the sessions query. Sessions close only after the gap; a
    # longer trigger costs no freshness there.
    processor_sessions_trigger_interval: str = "30 seconds"
    # Inactivity that ends a session.
    processor_session_gap: str = "30 minutes"
    # Leave bot-flagged events out of the aggregates (they stay in the events data set).
    processor_exclude_bots: bool = True
    # Address of /metrics, /healthz and /readyz (scraped from other pods).
    processor_metrics_host: str = "0.0.0.0"  # noqa: S104
    # Port of /metrics, /healthz and /readyz.
    processor_metrics_port: int = 9091
    # The bus the job reads: "kafka", or "kinesis" (KINESIS_* settings; docs/aws.md).
    processor_source: Literal["kafka", "kinesis"] = "kafka"
    # Where a query without a checkpoint starts reading: earliest or latest (the lake query
    # on the bus; the stateful ones, which read the lake, at its first or newest batch).
    processor_starting_offsets: str = "earliest"
    # Records per lake micro-batch at most (maxOffsetsPerTrigger), and events per windows
    # micro-batch; the bytes bound below may lower it (records_per_trigger). The sessions
    # query reads that many per lake trigger between two of its own (sessions_rows_per_trigger).
    processor_max_offsets_per_trigger: int = 200_000
    # Bytes of records one lake micro-batch may read at most: what a backlog of the
    # largest records can put in the executors' Python workers at once (the driver collects
    # only a row per object written). Kafka's source caps only records: the cap per trigger
    # becomes this divided by PROCESSOR_MAX_RECORD_BYTES (the Kinesis source also counts
    # bytes). 0: derived, the driver's result limit / RESULT_BYTES_PER_RECORD_BYTE (512 MiB
    # with the 2g driver, 9,362 records of 56 KiB per trigger).
    processor_max_batch_bytes: int = Field(default=0, ge=0)
    # The largest record on the bus: the collector's INGEST_MAX_EVENT_BYTES plus what it adds
    # to an event (clickstream_common.bus). Raise it with INGEST_MAX_EVENT_BYTES, or when
    # other producers write larger records.
    processor_max_record_bytes: int = Field(
        default=max_record_bytes(), ge=1, le=BUS_MAX_RECORD_BYTES
    )
    # spark.driver.maxResultSize: what one action may collect to the driver; a batch over it
    # fails its query rather than the driver's heap. Empty: half of PROCESSOR_DRIVER_MEMORY.
    processor_driver_max_result_size: str = ""
    # spark.sql.shuffle.partitions, also the state partitions: one per task slot (local[2];
    # 2 executors x 1 core), each a state store per stateful operator per batch. Window
    # freshness p95 in the benchmark: 6.4 and 5.1 s with 2, 8.7 and 10.2 s with 4 (two runs
    # each), at the same throughput. Fixed once a checkpoint exists.
    processor_shuffle_partitions: int = 2
    # spark.driver.memory (the default batch bound follows it; no batch is collected there).
    processor_driver_memory: str = "2g"
    # Spark's web UI also serves its Prometheus endpoints (/metrics/prometheus, executors).
    processor_spark_ui_port: int = 4040
    # Spark on Kubernetes (client mode: this process is the driver, executors are pods;
    # kubernetes.md).

    # Namespace of the executor pods (spark.kubernetes.namespace).
    processor_k8s_namespace: str = "default"
    # spark.executor.instances.
    processor_executor_instances: int = 2
    # Image of the executor pods (spark.kubernetes.container.image).
    processor_executor_image: str = ""
    # spark.executor.cores.
    processor_executor_cores: int = 1
    # spark.executor.memory.
    processor_executor_memory: str = "1g"
    # Service account of the executor pods.
    processor_executor_service_account: str = ""
    # spark.driver.host: the address executors reach the driver at (a headless Service).
    processor_driver_host: str = ""
    # spark.driver.port.
    processor_driver_port: int = 7078
    # spark.driver.blockManager.port.
    processor_block_manager_port: int = 7079
    # The driver's own pod: executors get it as owner and go when it goes.
    processor_driver_pod_name: str = ""
    # spark.kubernetes.executor.podTemplateFile: the executors' security context, volumes.
    processor_executor_pod_template: str = ""
    # Any Spark setting (JSON object of strings), applied last over the job's own settings;
    # the chart's streamProcessor.sparkConf.
    processor_spark_conf: dict[str, str] = {}
    # The late-data correction pass (stream_processor.correction).

    # `correct --every`: seconds between passes of the local stack's scheduled component.
    processor_correction_interval_seconds: float = 120.0
    # Sessions of late events are recomputed from a read range widened until each session is
    # whole; a session longer than this is left as the stream closed it (and logged).
    processor_correction_max_session_hours: float = 24.0
    # Port of /metrics of the scheduled correction loop (`correct --every`).
    processor_correction_metrics_port: int = 9093

    @model_validator(mode="after")
    def _ahead_below_the_watermark_delay(self) -> Settings:
        delay = interval_seconds(self.processor_watermark_delay)
        if self.processor_clock_max_ahead_seconds >= delay:
            raise ValueError(
                "PROCESSOR_CLOCK_MAX_AHEAD_SECONDS must stay below PROCESSOR_WATERMARK_DELAY "
                f"({self.processor_clock_max_ahead_seconds:g} s >= {delay:g} s): an event that "
                "far ahead would move the watermark past events that arrive on time"
            )
        return self

    @model_validator(mode="after")
    def _batches_fit_the_driver(self) -> Settings:
        driver = size_bytes(self.processor_driver_memory, "m")
        result = self.driver_max_result_bytes
        if result <= 0 or result > driver:
            raise ValueError(
                f"PROCESSOR_DRIVER_MAX_RESULT_SIZE ({self.processor_driver_max_result_size!r}) "
                f"must be above 0 and at most PROCESSOR_DRIVER_MEMORY "
                f"({self.processor_driver_memory!r}): a collected batch over the heap fails the "
                "driver instead of its query"
            )
        batch = self.max_batch_bytes
        if batch * RESULT_BYTES_PER_RECORD_BYTE > result:
            raise ValueError(
                f"PROCESSOR_MAX_BATCH_BYTES ({batch}) can collect {RESULT_BYTES_PER_RECORD_BYTE}x "
                f"its size in the driver, over spark.driver.maxResultSize ({result} bytes, "
                "PROCESSOR_DRIVER_MAX_RESULT_SIZE): a backlog of the largest records would fail "
                "the lake query on every replay"
            )
        if batch < self.processor_max_record_bytes:
            raise ValueError(
                f"PROCESSOR_MAX_BATCH_BYTES ({batch}) is below PROCESSOR_MAX_RECORD_BYTES "
                f"({self.processor_max_record_bytes}): no batch could hold the largest record"
            )
        return self

    @property
    def driver_max_result_bytes(self) -> int:
        """spark.driver.maxResultSize in bytes (half the driver's heap unless set)."""
        if self.processor_driver_max_result_size:
            return size_bytes(self.processor_driver_max_result_size)
        return size_bytes(self.processor_driver_memory, "m") // 2

    @property
    def max_batch_bytes(self) -> int:
        """Bytes of records a micro-batch may read (derived from the result limit unless set)."""
        if self.processor_max_batch_bytes:
            return self.processor_max_batch_bytes
        return self.driver_max_result_bytes // RESULT_BYTES_PER_RECORD_BYTE

    @property
    def records_per_trigger(self) -> int:
        """Records a micro-batch may read: the record cap, lowered so that as many of the
        largest records stay within the bytes bound."""
        return min(
            self.processor_max_offsets_per_trigger,
            self.max_batch_bytes // self.processor_max_record_bytes,
        )

    @property
    def sessions_rows_per_trigger(self) -> int:
        """Events a sessions micro-batch may read: as many as the lake can commit between two
        of its triggers (`records_per_trigger` per lake trigger), so that the sessions query
        keeps pace with the lake. Its input is the lake's events read back in the executors
        (narrow columns, never collected), so the lake's bytes bound does not apply to it;
        at one lake batch per sessions trigger it could read only 9,362 events per 30 s."""
        ratio = interval(self.processor_sessions_trigger_interval) / interval(
            self.processor_trigger_interval
        )
        return self.records_per_trigger * max(1, math.ceil(ratio))

    @property
    def clock_policy(self) -> ClockPolicy:
        return ClockPolicy(
            max_ahead=timedelta(seconds=self.processor_clock_max_ahead_seconds),
            max_behind=timedelta(seconds=self.processor_clock_max_behind_seconds),
        )
