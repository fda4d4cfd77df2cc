"""Settings from the environment; the Helm chart sets the same names (docs/contracts.md)."""

from __future__ import annotations

from clickstream_common.settings import ANOMALIES_TOPIC, CommonSettings, S3Settings


class Settings(CommonSettings, S3Settings):
    # Consumer group (offsets live in the checkpoint; the group names the client).
    anomaly_consumer_group: str = "anomaly-detector"
    # Topic the anomalies are published to.
    anomaly_topic: str = ANOMALIES_TOPIC
    # A first start without checkpoint reads the topics from here; "earliest" learns the
    # seasonal profile from the days the topic retains.
    anomaly_starting_offsets: str = "earliest"
    # Length of one bucket of each series.
    anomaly_bucket_seconds: float = 60.0
    # A bucket closes once the newest received_at is this far past its end (or the clock is,
    # when the consumer has read everything).
    anomaly_grace_seconds: float = 10.0
    # Score above which a bucket is an anomaly.
    anomaly_threshold: float = 6.0
    # Buckets of history a model keeps.
    anomaly_window: int = 60
    # Buckets a series needs before it is scored.
    anomaly_min_history: int = 20
    # Only buckets this recent raise anomaly_active (a replay of history does not page).
    anomaly_alert_max_age_seconds: float = 600.0
    # S3 key of the checkpoint: offsets, open buckets and models.
    anomaly_checkpoint_key: str = "state/anomaly-detector/checkpoint.json"
    # Also write the anomalies to the lake (processed/anomalies, loaded into the warehouse).
    anomaly_write_lake: bool = True
    # Address of /metrics (scraped from other pods).
    anomaly_metrics_host: str = "0.0.0.0"  # noqa: S104
    # Port of /metrics.
    anomaly_metrics_port: int = 9093
