"""Prometheus metrics of the loader (names in docs/contracts.md)."""

from prometheus_client import Counter, Gauge, Histogram

_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

OBJECTS_LOADED = Counter("loader_objects_loaded_total", "Parquet objects loaded", ["table"])
ROWS_LOADED = Counter("loader_rows_loaded_total", "Rows loaded (before dedup/merge)", ["table"])
BATCHES_LOADED = Counter("loader_batches_loaded_total", "Committed batches loaded", ["table"])
LOAD_SECONDS = Histogram(
    "loader_load_duration_seconds",
    "Claim, COPY, merge and ledger of one committed batch (one transaction)",
    ["table"],
    buckets=_DURATION_BUCKETS,
)
COPY_SECONDS = Histogram(
    "loader_copy_duration_seconds",
    "COPY of one batch into staging (or straight into an insert-only table)",
    ["table"],
    buckets=_DURATION_BUCKETS,
)
MERGE_SECONDS = Histogram(
    "loader_merge_duration_seconds",
    "Merge of one staged batch into its table",
    ["table"],
    buckets=_DURATION_BUCKETS,
)
LOAD_LAG = Histogram(
    "loader_load_lag_seconds",
    "Commit marker creation (processor commit) to warehouse commit",
    ["table"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300, 900),
)
FAILURES = Counter("loader_failures_total", "Load attempts that failed", ["table"])
QUARANTINED = Counter(
    "loader_quarantined_objects_total",
    "Committed batches set aside as unloadable (reason in analytics.quarantined_batches)",
    ["table"],
)
REFUSED = Counter(
    "loader_refused_batches_total",
    "Batches the warehouse refused for good (a value it cannot store), by SQLSTATE; quarantined",
    ["table", "sqlstate"],
)
RETRIES = Counter("loader_retries_total", "Load attempts retried after an error")
SKIPPED = Counter(
    "loader_notifications_skipped_total",
    "Notification records that led to no load",
    ["reason"],
)
PENDING = Gauge(
    "loader_pending_notifications",
    "Notifications received or waiting in the topic/queue and not yet acknowledged",
)
RECONCILED = Counter(
    "loader_reconciled_batches_total",
    "Batches the reconciliation sweep found unloaded and loaded (a notification was lost)",
    ["table"],
)
SWEEPS = Counter("loader_reconcile_sweeps_total", "Reconciliation sweeps completed")
READY = Gauge("loader_ready", "1 while the warehouse is reachable and notifications flow")
