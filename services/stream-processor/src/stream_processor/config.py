"""Settings from the environment; the Helm chart sets the same names."""

from __future__ import annotations

from typing import Literal

from clickstream_common.settings import CommonSettings, KinesisSettings, S3Settings


class Settings(CommonSettings, S3Settings, KinesisSettings):
    # spark.master: local[N], or k8s://... (the chart).
    processor_spark_master: str = "local[2]"
    # Comma-separated jar paths (spark.jars): the Kafka connector, hadoop-aws, the AWS SDK.
    processor_spark_jars: str = ""
    # Checkpoints of the queries: a volume path or s3a://...; must be durable.
    processor_checkpoint_location: str = "/tmp/clickstream/checkpoints"  # noqa: S108
    # How late an event may be and still count in windows and sessions.
    processor_watermark_delay: str = "2 minutes"
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
    # Where a query without a checkpoint starts reading: earliest or latest.
    processor_starting_offsets: str = "earliest"
    # Records per micro-batch at most, per query (maxOffsetsPerTrigger).
    processor_max_offsets_per_trigger: int = 200_000
    # spark.sql.shuffle.partitions, also the state partitions: one per task slot (local[2];
    # 2 executors x 1 core), each a state store per stateful operator per batch. Window
    # freshness p95 in the benchmark: 6.4 and 5.1 s with 2, 8.7 and 10.2 s with 4 (two runs
    # each), at the same throughput. Fixed once a checkpoint exists.
    processor_shuffle_partitions: int = 2
    # spark.driver.memory (a lake batch is collected in the driver).
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
