"""One hour compacted, then compacted again after a crash, on an in-memory S3 (moto): the
edge cases of the switch. The real stack's run is in test_dags.py."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from clickstream_common.arrow import arrow_schema
from clickstream_common.tables import EVENT_COUNTS_MINUTE
from orchestration.compaction import compact_hour, processed_eligibility
from orchestration.lakefiles import (
    RAW,
    ZONES,
    LakeObject,
    compacted_key,
    hour_prefix,
    list_hour,
    read_hour,
    read_manifest,
)
from orchestration.settings import Settings

BUCKET = "lake"
HOUR = datetime(2026, 11, 27, 9, tzinfo=UTC)
COUNTS = ZONES["event_counts_minute"]
SETTINGS = Settings(s3_bucket=BUCKET, compaction_min_age_seconds=0)


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def counts_object(s3: Any, batch: int) -> str:
    minute = HOUR + timedelta(minutes=batch)
    table = pa.table(
        {
            "window_start": [minute],
            "window_end": [minute + timedelta(minutes=1)],
            "event_type": ["page_view"],
            "events": [batch],
            "unique_users": [1],
            "batch_id": [batch],
        },
        schema=arrow_schema(EVENT_COUNTS_MINUTE),
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    key = hour_prefix(COUNTS, HOUR) + f"batch-{batch:012d}.parquet"
    s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())
    return key


def rows(s3: Any) -> list[dict[str, Any]]:
    found = []
    for obj in read_hour(s3, BUCKET, COUNTS, HOUR):
        body = s3.get_object(Bucket=BUCKET, Key=obj.key)["Body"].read()
        found += pq.read_table(io.BytesIO(body)).to_pylist()
    return sorted(found, key=lambda r: r["batch_id"])


def all_loaded(objects: Any) -> Any:
    statuses = {
        f"processed/event_counts_minute/_commits/batch-{b:012d}.json": "loaded" for b in range(50)
    }
    return processed_eligibility(COUNTS, objects, statuses, None, SETTINGS, datetime.now(UTC))


def test_an_hour_compacted_twice_and_after_a_crash_keeps_its_rows(s3: Any) -> None:
    for batch in range(5):
        counts_object(s3, batch)
    before = rows(s3)

    report = compact_hour(s3, BUCKET, COUNTS, HOUR, all_loaded, SETTINGS, datetime.now(UTC))
    assert (report.objects_before, report.objects_after, report.rewritten) == (5, 1, 5)
    assert [o.key for o in list_hour(s3, BUCKET, COUNTS, HOUR)] == report.written
    assert rows(s3) == before

    # Late batches arrive in the hour; then a run writes its compacted object and dies
    # before its switch (an orphan), and an old replaced object comes back as a leftover.
    counts_object(s3, 7)
    counts_object(s3, 8)
    orphan = compacted_key(COUNTS, HOUR, datetime.now(UTC) - timedelta(hours=2), 9, 8)
    s3.copy_object(
        Bucket=BUCKET, Key=orphan, CopySource={"Bucket": BUCKET, "Key": report.written[0]}
    )
    leftover = read_manifest(s3, BUCKET, COUNTS, HOUR).replaced[0]  # type: ignore[union-attr]
    s3.copy_object(
        Bucket=BUCKET, Key=leftover, CopySource={"Bucket": BUCKET, "Key": report.written[0]}
    )
    expected = before + [r for r in rows(s3) if r["batch_id"] in (7, 8)]
    assert rows(s3) == expected  # readers ignore both

    again = compact_hour(s3, BUCKET, COUNTS, HOUR, all_loaded, SETTINGS, datetime.now(UTC))
    assert again.leftovers_deleted == 2
    assert (again.objects_before, again.objects_after) == (3, 1)
    listed = [o.key for o in list_hour(s3, BUCKET, COUNTS, HOUR)]
    assert listed == again.written and orphan not in listed and leftover not in listed
    assert rows(s3) == expected
    assert again.written[0].split("/")[-1].startswith("batch-000000000008-compacted-")


def test_raw_records_are_joined_byte_for_byte(s3: Any) -> None:
    prefix = hour_prefix(RAW, HOUR)
    lines = []
    for batch in range(3):
        body = b"".join(b'{"n": %d, "i": %d}\n' % (batch, i) for i in range(4))
        lines.append(body)
        key = f"{prefix}batch_id={batch}/part-00000.json.gz"
        s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(body, mtime=0))

    def eligible(objects: Any) -> Any:
        return lambda obj: None

    report = compact_hour(s3, BUCKET, RAW, HOUR, eligible, SETTINGS, datetime.now(UTC))
    [key] = report.written
    assert key.startswith(prefix + "compacted-") and key.endswith(".json.gz")
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert gzip.decompress(body) == b"".join(lines)
    assert [o.key for o in list_hour(s3, BUCKET, RAW, HOUR)] == [key]


def test_objects_that_may_not_go_stay_where_they_are(s3: Any) -> None:
    keys = [counts_object(s3, batch) for batch in range(4)]

    def some_loaded(objects: Any) -> Any:
        statuses = {
            "processed/event_counts_minute/_commits/batch-000000000000.json": "loaded",
            "processed/event_counts_minute/_commits/batch-000000000001.json": "loaded",
            "processed/event_counts_minute/_commits/batch-000000000002.json": "quarantined",
        }
        return processed_eligibility(COUNTS, objects, statuses, None, SETTINGS, datetime.now(UTC))

    report = compact_hour(s3, BUCKET, COUNTS, HOUR, some_loaded, SETTINGS, datetime.now(UTC))
    assert report.skipped == {"quarantined": 1, "not loaded": 1}
    listed = {o.key for o in list_hour(s3, BUCKET, COUNTS, HOUR)}
    assert {keys[2], keys[3]} <= listed and not {keys[0], keys[1]} & listed
    assert len(listed) == 3


def test_nothing_to_do_changes_nothing(s3: Any) -> None:
    key = counts_object(s3, 1)
    report = compact_hour(s3, BUCKET, COUNTS, HOUR, all_loaded, SETTINGS, datetime.now(UTC))
    assert report.written == [] and report.skipped == {"alone": 1}
    assert read_manifest(s3, BUCKET, COUNTS, HOUR) is None
    assert [o.key for o in list_hour(s3, BUCKET, COUNTS, HOUR)] == [key]
    assert isinstance(list_hour(s3, BUCKET, COUNTS, HOUR)[0], LakeObject)
