"""The reconciliation sweep: committed batches that no notification announced.

Markers are named batch-<N:012d>.json, so S3 lists them in batch order. Per data set the
sweep keeps a watermark: every marker up to it is in the ledger (loaded or quarantined). Each
sweep lists only past the watermark; a restart starts from the beginning once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from clickstream_common.lake import COMMITS_DIR, PROCESSED_PREFIX, parse_commit_marker_key
from warehouse_loader.notifications import MarkerNotice, normalize_etag


@dataclass(frozen=True)
class ListedMarker:
    key: str
    etag: str


def commits_prefix(dataset: str) -> str:
    return f"{PROCESSED_PREFIX}/{dataset}/{COMMITS_DIR}/"


def list_markers(s3: Any, bucket: str, dataset: str, start_after: str) -> list[ListedMarker]:
    """Commit markers of a data set after `start_after`, in key (= batch) order."""
    found: list[ListedMarker] = []
    paginator = s3.get_paginator("list_objects_v2")
    pages = paginator.paginate(
        Bucket=bucket, Prefix=commits_prefix(dataset), StartAfter=start_after or ""
    )
    for page in pages:
        for item in page.get("Contents", []):
            if parse_commit_marker_key(item["Key"]) is not None:
                found.append(ListedMarker(item["Key"], normalize_etag(item.get("ETag"))))
    found.sort(key=lambda m: m.key)
    return found


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
        watermark = marker.key
    return watermark


def notice_for(bucket: str, marker: ListedMarker) -> MarkerNotice:
    parsed = parse_commit_marker_key(marker.key)
    if parsed is None:  # list_markers only returns marker keys
        raise ValueError(marker.key)
    return MarkerNotice(
        bucket=bucket, key=marker.key, etag=marker.etag, dataset=parsed[0], batch_id=parsed[1]
    )
