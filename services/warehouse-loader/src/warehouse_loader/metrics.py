"""Prometheus metrics of the loader (names in docs/contracts.md)."""

from prometheus_client import Counter, Histogram

OBJECTS_LOADED = Counter("loader_objects_loaded_total", "Objects loaded", ["table"])
ROWS_LOADED = Counter("loader_rows_loaded_total", "Rows loaded", ["table"])
LOAD_SECONDS = Histogram(
    "loader_load_duration_seconds",
    "COPY and merge of one committed batch",
    ["table"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LOAD_LAG = Histogram(
    "loader_load_lag_seconds",
    "Commit marker creation to warehouse commit",
    ["table"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300),
)
FAILURES = Counter("loader_failures_total", "Loads that failed and will be retried", ["table"])
QUARANTINED = Counter("loader_quarantined_objects_total", "Objects set aside as unloadable")
RETRIES = Counter("loader_retries_total", "Load attempts retried after an error")
SKIPPED = Counter(
    "loader_notifications_skipped_total",
    "Notification records not naming a commit marker",
    ["reason"],
)
