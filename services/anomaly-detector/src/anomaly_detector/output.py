"""Where anomalies go: the Kafka topic's JSON, the lake's rows (pure formatting)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from anomaly_detector.models import Verdict
from clickstream_common.tables import ANOMALIES


def anomaly_record(
    verdict: Verdict, width: timedelta, model: str, detected_at: datetime
) -> dict[str, Any]:
    """One anomaly: series, minute, observed, expected range, score (the topic's JSON)."""
    return {
        "series": verdict.series,
        "window_start": verdict.start.isoformat(),
        "window_end": (verdict.start + width).isoformat(),
        "observed": verdict.observed,
        "expected": verdict.expected,
        "expected_low": verdict.low,
        "expected_high": verdict.high,
        "score": verdict.score,
        "model": model,
        "detected_at": detected_at.isoformat(),
    }


def lake_table(records: list[dict[str, Any]], batch_id: int) -> pa.Table:
    """The rows of `analytics.anomalies`, typed like the loader expects."""
    times = ("window_start", "window_end", "detected_at")
    columns: dict[str, pa.Array] = {}
    for column in ANOMALIES.columns:
        name = column.name
        if name == "batch_id":
            columns[name] = pa.array([batch_id] * len(records), pa.int64())
        elif name in times:
            values = [datetime.fromisoformat(r[name]) for r in records]
            columns[name] = pa.array(values, pa.timestamp("us", tz="UTC"))
        elif name in ("series", "model"):
            columns[name] = pa.array([r[name] for r in records], pa.string())
        else:
            columns[name] = pa.array([float(r[name]) for r in records], pa.float64())
    return pa.table(columns)
