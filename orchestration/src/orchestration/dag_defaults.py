"""What every clickstream DAG shares: owner, retries, a start date, no overlapping runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

START = datetime(2026, 1, 1, tzinfo=UTC)
TAGS = ["clickstream"]


def default_args(retries: int = 2, timeout: timedelta = timedelta(hours=1)) -> dict[str, Any]:
    """Task defaults: retried twice five minutes apart (a warehouse restart, an S3 hiccup),
    stopped after `timeout` (a hung task holds its run, and the next one waits)."""
    return {
        "owner": "clickstream",
        "retries": retries,
        "retry_delay": timedelta(minutes=5),
        "execution_timeout": timeout,
    }


def dag_options(schedule: str | None, description: str, doc: str | None) -> dict[str, Any]:
    """Keyword arguments of every DAG: runs of one DAG never overlap (their state documents
    are read and written without locks), and missed runs are not replayed one by one."""
    return {
        "schedule": schedule,
        "start_date": START,
        "catchup": False,
        "max_active_runs": 1,
        "tags": TAGS,
        "description": description,
        "doc_md": doc,
    }
