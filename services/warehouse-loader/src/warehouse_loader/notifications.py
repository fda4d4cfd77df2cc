"""S3 event notifications -> the commit markers they announce (pure parsing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import orjson

from clickstream_common.lake import parse_commit_marker_key


@dataclass(frozen=True)
class MarkerNotice:
    bucket: str
    key: str
    etag: str
    dataset: str
    batch_id: int
    event_time: str | None


def markers_in(message: bytes) -> tuple[list[MarkerNotice], int]:
    """Commit markers announced by one S3 event message, and how many records were skipped.

    Test events, non-created events, malformed messages and other objects are skipped.
    Keys arrive URL-encoded in S3 notifications.
    """
    try:
        document: Any = orjson.loads(message)
    except orjson.JSONDecodeError:
        return [], 1
    records = document.get("Records") if isinstance(document, dict) else None
    if not isinstance(records, list):
        return [], 1
    found: list[MarkerNotice] = []
    skipped = 0
    for record in records:
        try:
            if not str(record.get("eventName", "")).startswith(
                ("s3:ObjectCreated:", "ObjectCreated:")
            ):
                skipped += 1
                continue
            s3 = record["s3"]
            key = unquote_plus(s3["object"]["key"])
            parsed = parse_commit_marker_key(key)
            if parsed is None:
                skipped += 1
                continue
            found.append(
                MarkerNotice(
                    bucket=s3["bucket"]["name"],
                    key=key,
                    etag=str(s3["object"].get("eTag") or s3["object"].get("etag") or ""),
                    dataset=parsed[0],
                    batch_id=parsed[1],
                    event_time=record.get("eventTime"),
                )
            )
        except (KeyError, TypeError, AttributeError):
            skipped += 1
    return found, skipped
