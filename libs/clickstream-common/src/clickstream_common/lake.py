"""Object layout of the data lake, shared by the processor (writer) and the loader (reader).

Two kinds of batch write processed data sets, each announced by a commit marker in
`processed/<dataset>/_commits/`:

* **stream batches**, one per micro-batch of a streaming query: `batch-<N:012>`;
* **corrections**, written by the late-data correction pass
  (`stream_processor.correction`): `correction-<written at>-<E:012>`, where E is the newest
  batch of the `events` data set the correction was computed from.

## Which row wins (the ordering rule, defined here and nowhere else)

Every warehouse row carries the `batch_id` of the batch that wrote it, and an upserted row is
replaced only by a row of a batch_id at least as high (`warehouse_loader.sql`). Stream
batches are numbered by their query: 0, 1, 2, ... (below 10^12, the width of their names).
A correction computed from the events data set up to stream batch E has the batch_id
`CORRECTION_BATCH_BASE + E`, so:

* a correction beats every stream row it replaces, whatever the order the loader sees them
  in (a correction only ever recomputes windows and sessions the stream has closed, so no
  stream batch after it can hold a newer value of them);
* a correction computed from more events (a higher E) beats one computed from fewer;
* two corrections with the same E were computed from the same events and agree.

A correction may also replace the *set* of rows of a range: for a table with a
`TableSpec.replace_scope` (sessions), the loader deletes the older rows of each group (user)
within the span the correction covers, so sessions that a late event merged or moved go away
(see docs/warehouse-loader.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

RAW_PREFIX = "raw/events"
PROCESSED_PREFIX = "processed"
COMMITS_DIR = "_commits"

STREAM_BATCH_WIDTH = 12
"""Digits of a stream batch id in object names; stream batch ids stay below 10**12."""

CORRECTION_BATCH_BASE = 10**15
"""Added to the events batch a correction was computed from: its rows' batch_id."""

_STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"

HOUR = timedelta(hours=1)
"""The lake's partition (`date=…/hour=…`) and the unit the hourly jobs work in."""


def floor_hour(t: datetime) -> datetime:
    """The start of the hour `t` is in (in UTC when `t` carries a zone)."""
    if t.tzinfo is not None:
        t = t.astimezone(UTC)
    return t.replace(minute=0, second=0, microsecond=0)


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """Every hour (lake partition) that [start, end) touches."""
    hours = []
    hour = floor_hour(start)
    while hour < end:
        hours.append(hour)
        hour += HOUR
    return hours


_COMMIT_KEY = re.compile(
    rf"^{PROCESSED_PREFIX}/(?P<dataset>[a-z0-9_]+)/{COMMITS_DIR}/"
    r"(?:batch-(?P<batch>\d{12})|correction-(?P<stamp>\d{8}T\d{12}Z)-(?P<events>\d{12}))\.json$"
)


class BatchKind(StrEnum):
    STREAM = "batch"
    CORRECTION = "correction"


def correction_batch_id(events_batch: int) -> int:
    """The batch_id of a correction computed from the events data set up to `events_batch`."""
    if not 0 <= events_batch < 10**STREAM_BATCH_WIDTH:
        raise ValueError(f"events batch {events_batch} out of range")
    return CORRECTION_BATCH_BASE + events_batch


def is_correction(batch_id: int) -> bool:
    return batch_id >= CORRECTION_BATCH_BASE


@dataclass(frozen=True)
class BatchName:
    """How one batch's objects and commit marker are named, and the batch_id its rows carry.

    Stream batches are named by their id, so a retried micro-batch overwrites its own objects.
    A correction's names also carry the moment it was written: two runs never share an
    object, so a run never changes the objects of a marker the loader may be reading, and the
    markers of one data set list in the order they were written (the loader's sweep relies
    on that).
    """

    batch_id: int
    label: str

    @classmethod
    def stream(cls, batch_id: int) -> BatchName:
        if not 0 <= batch_id < 10**STREAM_BATCH_WIDTH:
            raise ValueError(f"stream batch id {batch_id} out of range")
        return cls(batch_id, f"{BatchKind.STREAM}-{batch_id:012d}")

    @classmethod
    def correction(cls, events_batch: int, written_at: datetime) -> BatchName:
        stamp = written_at.astimezone(UTC).strftime(_STAMP_FORMAT)
        return cls(
            correction_batch_id(events_batch),
            f"{BatchKind.CORRECTION}-{stamp}-{events_batch:012d}",
        )

    @property
    def kind(self) -> BatchKind:
        return BatchKind.CORRECTION if is_correction(self.batch_id) else BatchKind.STREAM


def _name(batch: int | BatchName) -> BatchName:
    return batch if isinstance(batch, BatchName) else BatchName.stream(batch)


def partition_path(event_time: datetime) -> str:
    return f"date={event_time:%Y-%m-%d}/hour={event_time:%H}"


PART_WIDTH = 5
"""Digits of the part number (the Spark partition that wrote an object) in object names."""

_PART_SUFFIX = re.compile(rf"-part-\d{{{PART_WIDTH}}}$")


def part_suffix(part: int | None) -> str:
    """`-part-<P:05>` for an object one Spark partition of a batch wrote; "" for an object
    written for the whole batch (the driver, a correction, a service that is not Spark)."""
    return "" if part is None else f"-part-{part:0{PART_WIDTH}d}"


def processed_object_key(
    dataset: str, date: str, hour: str, batch: int | BatchName, part: int | None = None
) -> str:
    """Deterministic name: a retried micro-batch overwrites its own objects. The executors
    write one object per (batch, Spark partition, hour): `part` is the partition's number,
    which a batch that runs again gets again (the same source partitions, the same offsets)."""
    label = _name(batch).label + part_suffix(part)
    return f"{PROCESSED_PREFIX}/{dataset}/date={date}/hour={hour}/{label}.parquet"


def batch_label_of(stem: str) -> str:
    """The batch label (its commit marker's name) of an object's file name without its
    suffix: `batch-<N>` for `batch-<N>` and `batch-<N>-part-<P>`."""
    return _PART_SUFFIX.sub("", stem)


def commit_marker_key(dataset: str, batch: int | BatchName) -> str:
    return f"{PROCESSED_PREFIX}/{dataset}/{COMMITS_DIR}/{_name(batch).label}.json"


def commit_markers_prefix(dataset: str, kind: BatchKind) -> str:
    """The prefix under which one kind of marker of a data set lists in write order."""
    return f"{PROCESSED_PREFIX}/{dataset}/{COMMITS_DIR}/{kind}-"


def correction_marker_start_after(dataset: str, written_after: datetime) -> str:
    """A `StartAfter` key that lists the corrections written after `written_after`."""
    stamp = written_after.astimezone(UTC).strftime(_STAMP_FORMAT)
    return f"{commit_markers_prefix(dataset, BatchKind.CORRECTION)}{stamp}"


def correction_written_at(key: str) -> datetime | None:
    """When a correction marker was written, from its key (None for other keys)."""
    match = _COMMIT_KEY.match(key)
    if match is None or match["stamp"] is None:
        return None
    return datetime.strptime(match["stamp"], _STAMP_FORMAT).replace(tzinfo=UTC)


def parse_commit_marker_key(key: str) -> tuple[str, int] | None:
    """(dataset, batch_id) for a commit marker key of either kind, None for any other object."""
    match = _COMMIT_KEY.match(key)
    if match is None:
        return None
    if match["batch"] is not None:
        return match["dataset"], int(match["batch"])
    return match["dataset"], correction_batch_id(int(match["events"]))


class CommittedObject(BaseModel):
    key: str
    rows: int


SourceOffsets = dict[str, dict[str, int]]
"""End offsets of a batch's input: {topic: {partition: next offset}} (Kafka's own form)."""


class CommitMarker(BaseModel):
    """Written last for each data set and micro-batch: the batch is complete and loadable."""

    dataset: str
    batch_id: int
    objects: list[CommittedObject]
    committed_at: datetime
    max_received_at: datetime | None = None
    # The event-time watermark the streaming query ran this batch with. Windows that end at
    # or before it, and sessions whose last event plus the session gap is at or before it,
    # are final in the stream: the correction pass may recompute them.
    watermark: datetime | None = None
    # Where the batch's input ended; every record before these offsets has been through this
    # query. Comparing the events data set's offsets with a stateful query's tells whether
    # the lake already holds everything that query has aggregated.
    source_offsets: SourceOffsets | None = None


def offsets_cover(ahead: Mapping[str, Mapping[str, int]], behind: Mapping[str, Any]) -> bool:
    """True when `ahead` has reached `behind` on every topic and partition `behind` names."""
    for topic, partitions in behind.items():
        reached = ahead.get(topic)
        if reached is None:
            return False
        for partition, offset in partitions.items():
            if int(reached.get(partition, -1)) < int(offset):
                return False
    return True


ERRORS_PREFIX = "errors/events"
"""Records the processor rejected: one gzip JSON-lines object per micro-batch and hour."""


def error_object_key(date: str, hour: str, batch_id: int, part: int | None = None) -> str:
    """Deterministic like the processed objects: a retried batch overwrites its own."""
    name = f"batch-{batch_id:012d}{part_suffix(part)}"
    return f"{ERRORS_PREFIX}/date={date}/hour={hour}/{name}.jsonl.gz"


CORRECTIONS_PREFIX = "corrections"
"""State of the late-data correction pass (not a data set: the loader never reads it)."""

CORRECTION_STATE_KEY = f"{CORRECTIONS_PREFIX}/state.json"


@dataclass(frozen=True)
class ListedMarker:
    key: str
    etag: str


def read_commit_marker(s3: Any, bucket: str, key: str) -> CommitMarker:
    """One commit marker's body, parsed."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return CommitMarker.model_validate_json(body)


def list_commit_markers(
    s3: Any, bucket: str, dataset: str, kind: BatchKind, start_after: str = ""
) -> list[ListedMarker]:
    """One kind of commit marker of a data set, after `start_after`, in key (= write) order."""
    found: list[ListedMarker] = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=commit_markers_prefix(dataset, kind), StartAfter=start_after or ""
    )
    for page in pages:
        for item in page.get("Contents", []):
            if parse_commit_marker_key(item["Key"]) is not None:
                etag = str(item.get("ETag") or "").strip().strip('"')
                found.append(ListedMarker(item["Key"], etag))
    found.sort(key=lambda m: m.key)
    return found


_STREAM_OBJECT = re.compile(r"/batch-(\d{12})(?=[./-])")


def stream_batch_of_object(key: str) -> int | None:
    """The stream batch a processed object belongs to (None for corrections and others)."""
    match = _STREAM_OBJECT.search(key)
    return int(match[1]) if match else None
