"""Object layout of the data lake, shared by the processor (writer) and the loader (reader)."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel

RAW_PREFIX = "raw/events"
PROCESSED_PREFIX = "processed"
COMMITS_DIR = "_commits"

_COMMIT_KEY = re.compile(
    rf"^{PROCESSED_PREFIX}/(?P<dataset>[a-z0-9_]+)/{COMMITS_DIR}/batch-(?P<batch>\d{{12}})\.json$"
)


def partition_path(event_time: datetime) -> str:
    return f"date={event_time:%Y-%m-%d}/hour={event_time:%H}"


def processed_object_key(dataset: str, date: str, hour: str, batch_id: int) -> str:
    """Deterministic name: a retried micro-batch overwrites its own objects."""
    return f"{PROCESSED_PREFIX}/{dataset}/date={date}/hour={hour}/batch-{batch_id:012d}.parquet"


def commit_marker_key(dataset: str, batch_id: int) -> str:
    return f"{PROCESSED_PREFIX}/{dataset}/{COMMITS_DIR}/batch-{batch_id:012d}.json"


def parse_commit_marker_key(key: str) -> tuple[str, int] | None:
    """(dataset, batch_id) for a commit marker key, None for any other object."""
    match = _COMMIT_KEY.match(key)
    if match is None:
        return None
    return match["dataset"], int(match["batch"])


class CommittedObject(BaseModel):
    key: str
    rows: int


class CommitMarker(BaseModel):
    """Written last for each data set and micro-batch: the batch is complete and loadable."""

    dataset: str
    batch_id: int
    objects: list[CommittedObject]
    committed_at: datetime
    max_received_at: datetime | None = None


ERRORS_PREFIX = "errors/events"
"""Records the processor rejected: one gzip JSON-lines object per micro-batch and hour."""


def error_object_key(date: str, hour: str, batch_id: int) -> str:
    """Deterministic like the processed objects: a retried batch overwrites its own."""
    return f"{ERRORS_PREFIX}/date={date}/hour={hour}/batch-{batch_id:012d}.jsonl.gz"
