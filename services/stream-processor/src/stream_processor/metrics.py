"""Streaming query progress exported to Prometheus (names in docs/contracts.md)."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from pyspark.sql.streaming.listener import StreamingQueryListener

log = logging.getLogger(__name__)

BATCHES = Counter("processor_batches_total", "Completed micro-batches", ["query"])
INPUT_ROWS = Counter("processor_input_rows_total", "Rows read from Kafka", ["query"])
BATCH_SECONDS = Histogram(
    "processor_batch_duration_seconds",
    "Micro-batch duration",
    ["query"],
    buckets=(0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60),
)
INPUT_RATE = Gauge("processor_input_rows_per_second", "Input rate of the last batch", ["query"])
PROCESSED_RATE = Gauge(
    "processor_processed_rows_per_second", "Processing rate of the last batch", ["query"]
)
STATE_ROWS = Gauge("processor_state_rows", "Rows held in state", ["query"])
WATERMARK_DELAY = Gauge(
    "processor_watermark_delay_seconds", "Batch trigger time minus the watermark", ["query"]
)
ERROR_RECORDS = Counter(
    "processor_error_records_total", "Records that failed the schema, sent to errors/", ["reason"]
)
LATE_EVENTS = Counter(
    "processor_late_events_total",
    "Events behind the watermark: kept in the events data set, left out of the aggregates",
)
FRESHNESS = Histogram(
    "processor_freshness_seconds",
    "Commit time minus the newest received_at in the batch",
    ["query"],
    buckets=(0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 600, 1800, 3600),
)

# The query whose dropped-late rows are the late events (the sessions query drops the same
# events again; counting both would count each late event twice).
LATE_EVENTS_QUERY = "windows"


def seconds(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def late_rows(progress: dict[str, Any]) -> int:
    """Rows the deduplication dropped behind the watermark (one per late event).

    The window aggregation after it drops expanded window rows of windows already final,
    which are not events, so only the deduplication operator counts.
    """
    return sum(
        int(op.get("numRowsDroppedByWatermark", 0))
        for op in progress.get("stateOperators") or []
        if "dedup" in str(op.get("operatorName", "")).lower()
    )


def record_progress(progress: dict[str, Any]) -> None:
    """One query progress report (StreamingQueryProgress.json, parsed) -> samples."""
    name = progress.get("name") or "unnamed"
    BATCHES.labels(name).inc()
    INPUT_ROWS.labels(name).inc(progress.get("numInputRows", 0))
    INPUT_RATE.labels(name).set(progress.get("inputRowsPerSecond") or 0)
    PROCESSED_RATE.labels(name).set(progress.get("processedRowsPerSecond") or 0)
    duration_ms = (progress.get("durationMs") or {}).get("triggerExecution")
    if duration_ms is not None:
        BATCH_SECONDS.labels(name).observe(duration_ms / 1000)
    state = progress.get("stateOperators") or []
    STATE_ROWS.labels(name).set(sum(op.get("numRowsTotal", 0) for op in state))
    if name == LATE_EVENTS_QUERY:
        late = late_rows(progress)
        if late:
            LATE_EVENTS.inc(late)
    watermark = seconds((progress.get("eventTime") or {}).get("watermark"))
    trigger = seconds(progress.get("timestamp"))
    if watermark and trigger and watermark > 0:
        WATERMARK_DELAY.labels(name).set(trigger - watermark)


class PrometheusListener(StreamingQueryListener):
    """Turns each query's progress report into Prometheus samples."""

    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        pass

    def onQueryProgress(self, event: Any) -> None:
        progress = json.loads(event.progress.json)
        record_progress(progress)
        log.info(
            "batch finished",
            extra={
                "query": progress.get("name"),
                "batch_id": progress.get("batchId"),
                "rows": progress.get("numInputRows"),
                "duration_ms": (progress.get("durationMs") or {}).get("triggerExecution"),
                "watermark": (progress.get("eventTime") or {}).get("watermark"),
            },
        )
