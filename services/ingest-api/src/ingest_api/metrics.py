"""Prometheus metrics of the collector (names listed in docs/contracts.md)."""

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "ingest_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
HTTP_SECONDS = Histogram(
    "ingest_http_request_duration_seconds",
    "Time to answer a request",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_ACCEPTED = Counter(
    "ingest_events_accepted_total", "Events acknowledged by Kafka", ["source", "event_type"]
)
EVENTS_REJECTED = Counter("ingest_events_rejected_total", "Events refused", ["reason"])
PUBLISH_SECONDS = Histogram(
    "ingest_kafka_publish_duration_seconds",
    "Time until Kafka acknowledged a request's events",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
KAFKA_ERRORS = Counter("ingest_kafka_errors_total", "Publishes that Kafka did not acknowledge")
# With several worker processes: the lowest of the live workers' values.
READY = Gauge("ingest_ready", "1 while the collector can reach Kafka", multiprocess_mode="livemin")
BATCH_EVENTS = Histogram(
    "ingest_batch_events", "Events per request", buckets=(1, 5, 10, 25, 50, 100, 250, 500)
)
PAYLOAD_BYTES = Histogram(
    "ingest_payload_bytes",
    "Request body size",
    buckets=(256, 1024, 4096, 16384, 65536, 262144, 1048576),
)
EVENT_TIME_ADJUSTED = Counter(
    "ingest_event_time_adjusted_total",
    "Accepted events whose time the clock policy replaced with the receive time",
    ["bound"],
)
CONNECTIONS_REFUSED = Counter(
    "ingest_connections_refused_total",
    "Connections the server's limits closed",
    ["reason"],
)
