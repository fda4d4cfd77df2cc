"""The batch jobs' figures in Prometheus, through a pushgateway.

A batch job is not running when Prometheus scrapes, so each run pushes its figures to a
pushgateway (`ORCHESTRATION_PUSHGATEWAY_URL`), which Prometheus scrapes with
`honor_labels: true`. Each job pushes one group (its `job` label, and `namespace` when
`ORCHESTRATION_METRICS_NAMESPACE` is set, so the chart's namespace-scoped alert rules match);
a push replaces the job's previous group whole, so a check that stopped failing stops being
reported as failing. Metric names are in docs/contracts.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from orchestration.quality import CheckResult
from orchestration.settings import Settings

log = logging.getLogger(__name__)

DATA_QUALITY_JOB = "clickstream-data-quality"
COMPACTION_JOB = "clickstream-compaction"
CATCHUP_JOB = "clickstream-catchup"


@dataclass(frozen=True)
class Sample:
    name: str
    help: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


def push(settings: Settings, job: str, samples: Iterable[Sample]) -> bool:
    """Push one job's samples as its whole group; False when no pushgateway is configured."""
    if not settings.orchestration_pushgateway_url:
        return False
    registry = CollectorRegistry()
    gauges: dict[str, Gauge] = {}
    for sample in samples:
        names = tuple(k for k, _ in sample.labels)
        gauge = gauges.get(sample.name)
        if gauge is None:
            gauge = Gauge(sample.name, sample.help, names, registry=registry)
            gauges[sample.name] = gauge
        (gauge.labels(*(v for _, v in sample.labels)) if names else gauge).set(sample.value)
    grouping = {}
    if settings.orchestration_metrics_namespace:
        grouping["namespace"] = settings.orchestration_metrics_namespace
    push_to_gateway(
        settings.orchestration_pushgateway_url,
        job=job,
        registry=registry,
        grouping_key=grouping,
        timeout=30,
    )
    log.info("metrics pushed", extra={"job": job, "series": len(gauges)})
    return True


def quality_samples(results: Sequence[CheckResult], hour: datetime, now: datetime) -> list[Sample]:
    """The `clickstream_dq_*` samples of one data-quality run."""
    samples = []
    for r in results:
        labels = (("check", r.check), ("subject", r.subject))
        status = r.status.value
        samples.append(
            Sample(
                "clickstream_dq_check_failed",
                "1 when a data-quality check failed or could not run for the checked hour",
                0.0 if status == "ok" else 1.0,
                labels,
            )
        )
        for field in ("expected", "observed"):
            value = getattr(r, field)
            if value is not None:
                samples.append(
                    Sample(
                        f"clickstream_dq_check_{field}",
                        f"The {field} figure of a data-quality check (see dq_results)",
                        float(value),
                        labels,
                    )
                )
    samples.append(
        Sample(
            "clickstream_dq_checked_hour_timestamp_seconds",
            "Start of the hour the last data-quality run checked",
            hour.timestamp(),
        )
    )
    samples.append(
        Sample(
            "clickstream_dq_last_run_timestamp_seconds",
            "When the last data-quality run finished",
            now.timestamp(),
        )
    )
    return samples
