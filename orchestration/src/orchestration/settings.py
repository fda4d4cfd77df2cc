"""Settings of the batch jobs, from the environment (the Airflow workers' env, set by Helm).

The jobs reuse the services' own names for what they share with them: `S3_*`,
`WAREHOUSE_DSN`, `WAREHOUSE_DIALECT`, `KAFKA_*`, and the `PROCESSOR_*` settings the Spark
tasks read through `stream_processor.config.Settings` (so the correction and the backfill
compute the same definitions as the streaming job). What only the batch side has is here.
"""

from __future__ import annotations

from clickstream_common.settings import CommonSettings, S3Settings
from clickstream_common.tables import Dialect


class Settings(CommonSettings, S3Settings):
    # libpq URL of the warehouse (the loader's setting).
    warehouse_dsn: str = "postgresql://postgres@127.0.0.1:15432/clickstream"
    # SQL dialect of the warehouse (the loader's setting).
    warehouse_dialect: Dialect = Dialect.POSTGRES

    # Prometheus: the data-quality results and the jobs' figures are pushed here (a
    # pushgateway's base URL); empty: not pushed (the results still go to dq_results).
    orchestration_pushgateway_url: str = ""
    # Pushed as the `namespace` label, so the chart's namespace-scoped alert rules match.
    orchestration_metrics_namespace: str = ""

    # Data-quality thresholds (docs/orchestration.md).

    # Highest share of events without a field's value.
    dq_null_rate_max: float = 0.01
    # Highest share of events whose time the clock policy replaced.
    dq_adjusted_time_rate_max: float = 0.05
    # Highest share of rejected events.
    dq_dead_letter_rate_max: float = 0.02
    # Oldest age of a source's newest event.
    dq_freshness_max_seconds: float = 900.0
    # Sources seen within this many hours are expected to keep sending (freshness).
    dq_freshness_lookback_hours: float = 24.0
    # Committed batches younger than this are not yet expected in the ledger.
    dq_ledger_grace_seconds: float = 600.0
    # Where the collector's rejected events go: "kafka" (the dead-letter topic) or "none"
    # (only the processor's errors/ zone is counted; e.g. on the Kinesis bus).
    dq_dead_letter_source: str = "kafka"

    # Compaction: objects smaller than this are rewritten.
    compaction_small_object_bytes: int = 32 * 1024 * 1024
    # Size compacted objects aim at.
    compaction_target_object_bytes: int = 128 * 1024 * 1024
    # How many days back a daily run looks for hours that late data has touched again.
    compaction_lookback_days: int = 7
    # An object younger than this is never compacted (a retried batch may still rewrite it).
    compaction_min_age_seconds: float = 3600.0
    # Whether the events data set waits for the correction pass to have examined a batch
    # before compacting its objects: the pass reads a new batch's objects by name once, and
    # examines it only after the processor's windows and sessions queries have read it.
    compaction_wait_for_correction: bool = True

    # Backfill: how far back before a range's start the sessions are read (a session that
    # starts in the range is whole only if no earlier event is within the gap of it), and
    # the longest session that is rebuilt whole.
    backfill_max_session_hours: float = 24.0
