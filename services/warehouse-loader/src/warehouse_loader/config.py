"""Settings from the environment; the Helm chart sets the same names (docs/contracts.md)."""

from __future__ import annotations

from enum import StrEnum

from clickstream_common.settings import CommonSettings, S3Settings
from clickstream_common.tables import Dialect


class NotificationSource(StrEnum):
    KAFKA = "kafka"  # versitygw locally and in-cluster
    SQS = "sqs"  # Amazon S3 event notifications on AWS


class Settings(CommonSettings, S3Settings):
    warehouse_dsn: str = "postgresql://postgres@127.0.0.1:15432/clickstream"
    warehouse_dialect: Dialect = Dialect.POSTGRES
    loader_notifications_source: NotificationSource = NotificationSource.KAFKA
    loader_notifications_topic: str = "clickstream.s3-events"
    loader_consumer_group: str = "warehouse-loader"
    loader_sqs_queue_url: str | None = None
    loader_sqs_endpoint_url: str | None = None  # empty: AWS; a local SQS-compatible endpoint
    loader_sqs_wait_seconds: int = 5  # long poll; also bounds how long a shutdown waits
    loader_sqs_visibility_timeout_seconds: int = 300
    loader_metrics_host: str = "0.0.0.0"  # noqa: S104  # scraped from other pods
    loader_metrics_port: int = 9092
    loader_retry_max_seconds: float = 30.0
    # Errors that are neither the warehouse/S3 being unavailable nor a bad object are retried
    # this many times, then the batch is quarantined so the loader keeps going.
    loader_max_attempts: int = 5
    # 0 turns the sweep off (including the one at start-up).
    loader_reconcile_interval_seconds: float = 60.0
    # Redshift: the role COPY assumes to read the lake, and where batch manifests go.
    loader_redshift_iam_role: str | None = None
    loader_manifest_prefix: str = "loader/manifests/"
