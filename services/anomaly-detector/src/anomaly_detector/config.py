"""Settings from the environment; the Helm chart sets the same names (docs/contracts.md)."""

from __future__ import annotations

from clickstream_common.settings import CommonSettings, S3Settings


class Settings(CommonSettings, S3Settings):
    anomaly_consumer_group: str = "anomaly-detector"
    anomaly_topic: str = "clickstream.anomalies"
    # A first start without checkpoint reads the topics from here; "earliest" learns the
    # seasonal profile from the days the topic retains.
    anomaly_starting_offsets: str = "earliest"
    anomaly_bucket_seconds: float = 60.0
    # A bucket closes once the newest received_at is this far past its end (or the clock is,
    # when the consumer has read everything).
    anomaly_grace_seconds: float = 10.0
    anomaly_threshold: float = 6.0
    anomaly_window: int = 60
    anomaly_min_history: int = 20
    # Only buckets this recent raise anomaly_active (a replay of history does not page).
    anomaly_alert_max_age_seconds: float = 600.0
    anomaly_checkpoint_key: str = "state/anomaly-detector/checkpoint.json"
    anomaly_write_lake: bool = True
    anomaly_metrics_host: str = "0.0.0.0"  # noqa: S104  # scraped from other pods
    anomaly_metrics_port: int = 9093
