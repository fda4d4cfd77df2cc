"""S3 event notifications -> the commit markers they announce (pure parsing).

The same S3 event JSON arrives from versitygw over Kafka and from Amazon S3 over SQS
(optionally wrapped in an SNS envelope). Keys arrive URL-encoded.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import orjson

from clickstream_common.lake import parse_commit_marker_key

# Reasons for loader_notifications_skipped_total{reason}.
MALFORMED = "malformed"
TEST_EVENT = "test_event"
NOT_CREATED = "not_object_created"
NOT_A_MARKER = "not_a_commit_marker"
OTHER_BUCKET = "other_bucket"


@dataclass(frozen=True)
class MarkerNotice:
    bucket: str
    key: str
    etag: str  # as announced; the loader uses the ETag of the version it actually reads
    dataset: str
    batch_id: int
    event_time: str | None = None


def normalize_etag(etag: str | None) -> str:
    return (etag or "").strip().strip('"')


def _unwrap(document: Any) -> Any:
    # S3 -> SNS -> SQS delivers the S3 event as a JSON string inside an SNS envelope.
    if isinstance(document, dict) and document.get("Type") == "Notification":
        message = document.get("Message")
        if isinstance(message, str):
            try:
                return orjson.loads(message)
            except orjson.JSONDecodeError:
                return None
    return document


def markers_in(
    message: bytes, bucket: str | None = None
) -> tuple[list[MarkerNotice], Counter[str]]:
    """Commit markers announced by one S3 event message, and the skipped records by reason.

    Test events, non-created events, malformed messages, other objects and (when `bucket`
    is given) other buckets are skipped.
    """
    skipped: Counter[str] = Counter()
    try:
        document: Any = _unwrap(orjson.loads(message))
    except orjson.JSONDecodeError:
        skipped[MALFORMED] += 1
        return [], skipped
    if isinstance(document, dict) and str(document.get("Event", "")).endswith("TestEvent"):
        skipped[TEST_EVENT] += 1
        return [], skipped
    records = document.get("Records") if isinstance(document, dict) else None
    if not isinstance(records, list):
        skipped[MALFORMED] += 1
        return [], skipped
    found: list[MarkerNotice] = []
    for record in records:
        try:
            if not str(record.get("eventName", "")).startswith(
                ("s3:ObjectCreated:", "ObjectCreated:")
            ):
                skipped[NOT_CREATED] += 1
                continue
            s3 = record["s3"]
            key = unquote_plus(s3["object"]["key"])
            name = s3["bucket"]["name"]
            if bucket is not None and name != bucket:
                skipped[OTHER_BUCKET] += 1
                continue
            parsed = parse_commit_marker_key(key)
            if parsed is None:
                skipped[NOT_A_MARKER] += 1
                continue
            found.append(
                MarkerNotice(
                    bucket=name,
                    key=key,
                    etag=normalize_etag(s3["object"].get("eTag") or s3["object"].get("etag")),
                    dataset=parsed[0],
                    batch_id=parsed[1],
                    event_time=record.get("eventTime"),
                )
            )
        except (KeyError, TypeError, AttributeError):
            skipped[MALFORMED] += 1
    return found, skipped


def unique_notices(notices: list[MarkerNotice]) -> list[MarkerNotice]:
    """Drop repeats of the same marker version within one poll, keeping the first."""
    seen: set[tuple[str, str, str]] = set()
    result = []
    for notice in notices:
        identity = (notice.bucket, notice.key, notice.etag)
        if identity not in seen:
            seen.add(identity)
            result.append(notice)
    return result
