"""Prometheus metrics of the anomaly detector (names in docs/contracts.md)."""

from prometheus_client import Counter, Gauge

SCORE = Gauge("anomaly_score", "Signed score of the latest closed bucket", ["series"])
ACTIVE = Gauge(
    "anomaly_active",
    "1 while the latest closed bucket of the series is anomalous (alert rule input)",
    ["series"],
)
DETECTED = Counter("anomaly_detected_total", "Anomalous buckets found", ["series"])
RECORDS = Counter("anomaly_records_total", "Records read", ["topic"])
LATE = Counter("anomaly_late_records_total", "Records whose bucket had closed already")
BUCKETS = Counter("anomaly_buckets_closed_total", "Buckets closed and scored")
LAST_BUCKET_END = Gauge(
    "anomaly_last_bucket_end_timestamp_seconds", "End of the newest closed bucket (unix time)"
)
READY = Gauge("anomaly_ready", "1 while Kafka is reachable and records are consumed")
