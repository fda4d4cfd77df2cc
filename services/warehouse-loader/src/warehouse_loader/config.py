"""Settings from the environment; the Helm chart sets the same names (docs/contracts.md)."""

from __future__ import annotations

from enum import StrEnum

from clickstream_common.settings import S3_EVENTS_TOPIC, CommonSettings, S3Settings
from clickstream_common.tables import Dialect


class NotificationSource(StrEnum):
    KAFKA = "kafka"  # versitygw locally and in-cluster
    SQS = "sqs"  # Amazon S3 event notifications on AWS


class Settings(CommonSettings, S3Settings):
    # libpq URL of the warehouse (PostgreSQL or Redshift).
    warehouse_dsn: str = "postgresql://postgres@127.0.0.1:15432/clickstream"
    # SQL dialect of the warehouse.
    warehouse_dialect: Dialect = Dialect.POSTGRES
    # Where S3 object-created notifications come from: Kafka (versitygw) or SQS (Amazon S3).
    loader_notifications_source: NotificationSource = NotificationSource.KAFKA
    # Topic of the S3 notifications (source kafka).
    loader_notifications_topic: str = S3_EVENTS_TOPIC
    # Consumer group on the notifications topic.
    loader_consumer_group: str = "warehouse-loader"
    # Queue of the S3 notifications (source sqs).
    loader_sqs_queue_url: str | None = None
    # SQS-compatible endpoint (tests); unset: AWS.
    loader_sqs_endpoint_url: str | None = None
    # Long poll of one SQS receive; also bounds how long a shutdown waits.
    loader_sqs_wait_seconds: int = 5
    # How long a received notification stays hidden from other loaders while it is loaded.
    loader_sqs_visibility_timeout_seconds: int = 300
    # Address of /metrics, /healthz and /readyz (scraped from other pods).
    loader_metrics_host: str = "0.0.0.0"  # noqa: S104
    # Port of /metrics, /healthz and /readyz.
    loader_metrics_port: int = 9092
    # Longest wait between retries while the warehouse or S3 is unavailable.
    loader_retry_max_seconds: float = 30.0
    # Errors that are neither the warehouse/S3 being unavailable nor a bad object are retried
    # this many times, then the batch is quarantined so the loader keeps going.
    loader_max_attempts: int = 5
    # 0 turns the sweep off (including the one at start-up).
    loader_reconcile_interval_seconds: float = 60.0
    # Redshift: the role COPY assumes to read the lake.
    loader_redshift_iam_role: str | None = None
    # Redshift: where the batch manifests COPY reads are written in the bucket.
    loader_manifest_prefix: str = "loader/manifests/"
