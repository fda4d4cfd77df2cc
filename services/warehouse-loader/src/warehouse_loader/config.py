"""Settings from the environment; the Helm chart sets the same names."""

from __future__ import annotations

from clickstream_common.settings import CommonSettings, S3Settings
from clickstream_common.tables import Dialect


class Settings(CommonSettings, S3Settings):
    warehouse_dsn: str = "postgresql://postgres@127.0.0.1:15432/clickstream"
    warehouse_dialect: Dialect = Dialect.POSTGRES
    loader_notifications_topic: str = "clickstream.s3-events"
    loader_consumer_group: str = "warehouse-loader"
    loader_metrics_host: str = "0.0.0.0"  # noqa: S104  # scraped from other pods
    loader_metrics_port: int = 9092
    loader_retry_max_seconds: float = 30.0
