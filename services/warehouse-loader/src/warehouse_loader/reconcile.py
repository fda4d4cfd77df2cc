"""The reconciliation sweep: committed batches that no notification announced.

Markers of each kind list in the order they were written: stream markers are named
batch-<N:012d>.json, corrections correction-<written at>-<E>.json (clickstream_common.lake).
Per data set and kind the sweep keeps a watermark: every marker up to it is in the ledger
(loaded or quarantined). Each sweep lists only past it; for corrections it lists from a
lookback before it, since two correction runs may write their markers in an order a little
different from their names. A restart starts from the beginning once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from clickstream_common.lake import (
    BatchKind,
    ListedMarker,
    commit_markers_prefix,
    correction_marker_start_after,
    correction_written_at,
    list_commit_markers,
    parse_commit_marker_key,
)
from warehouse_loader.notifications import MarkerNotice

CORRECTION_LOOKBACK = timedelta(hours=1)
"""How far before its watermark the sweep lists corrections again (clock skew, slow runs)."""

__all__ = ["ListedMarker", "advance", "list_markers", "notice_for", "unrecorded"]


def list_start(dataset: str, kind: BatchKind, watermark: str) -> str:
    """Where a sweep of one kind of marker starts listing, given its watermark key."""
    if kind is BatchKind.STREAM or not watermark:
        return watermark
    written = correction_written_at(watermark)
    if written is None:
        return ""
    return correction_marker_start_after(dataset, written - CORRECTION_LOOKBACK)


def key_range(dataset: str, kind: BatchKind, start_after: str) -> tuple[str, str]:
    """(lower, upper) bounds of the ledger keys of one kind of marker past `start_after`."""
    prefix = commit_markers_prefix(dataset, kind)
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return max(start_after, prefix), upper


def list_markers(
    s3: Any, bucket: str, dataset: str, start_after: str, kind: BatchKind = BatchKind.STREAM
) -> list[ListedMarker]:
    """Commit markers of one kind of a data set after `start_after`, in key order."""
    return list_commit_markers(s3, bucket, dataset, kind, start_after)


def unrecorded(
    listed: Iterable[ListedMarker], recorded: set[tuple[str, str]]
) -> list[ListedMarker]:
    """Listed marker versions the ledger does not hold."""
    return [m for m in listed if (m.key, m.etag) not in recorded]


def advance(watermark: str, listed: list[ListedMarker], recorded: set[tuple[str, str]]) -> str:
    """The last key up to which every listed marker is recorded (listed is in key order)."""
    for marker in listed:
        if (marker.key, marker.etag) not in recorded:
            break
        watermark = max(watermark, marker.key)
    return watermark


def notice_for(bucket: str, marker: ListedMarker) -> MarkerNotice:
    parsed = parse_commit_marker_key(marker.key)
    if parsed is None:  # list_markers only returns marker keys
        raise ValueError(marker.key)
    return MarkerNotice(
        bucket=bucket, key=marker.key, etag=marker.etag, dataset=parsed[0], batch_id=parsed[1]
    )
