"""Prometheus metrics of the recommender (names in docs/contracts.md)."""

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "recommender_http_requests_total", "HTTP requests answered", ["route", "status"]
)
HTTP_SECONDS = Histogram(
    "recommender_http_request_duration_seconds",
    "Time to answer a request",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1),
)
RECORDS = Counter("recommender_records_total", "Records read from the events topic")
APPLIED = Counter("recommender_events_applied_total", "Events applied to the state in Redis")
CONSUMER_ERRORS = Counter("recommender_consumer_errors_total", "Batches that failed and retried")
LAG = Gauge(
    "recommender_state_lag_seconds",
    "Now minus the received_at of the newest event applied (freshness of the state)",
)
PERSONALIZED = Counter(
    "recommender_user_answers_total",
    "Answers of the users endpoint, by kind (personalized or trending fallback)",
    ["kind"],
)
READY = Gauge("recommender_ready", "1 while Redis answers and the consumer runs")
