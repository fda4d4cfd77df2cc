"""Poison objects, lost notifications and the SQS source, on real components."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clickstream_common.lake import CommitMarker, CommittedObject, commit_marker_key
from clickstream_common.tables import EVENT_COUNTS_MINUTE, EVENTS, SESSIONS
from clickstream_local.config import free_ports
from tests.conftest import wait_for
from tests.loader.conftest import LoaderFactory
from tests.loader.harness import Lake, create_topic, group_lag, wait_until_equal
from tests.loader.lakedata import (
    build_batches,
    expected_tables,
    put_marker,
    snapshot,
    to_table,
    write_all,
    write_batch,
)

pytestmark = pytest.mark.platform


def _poison_marker(lake: Lake, dataset: str, batch_id: int, body: bytes) -> str:
    key = f"processed/{dataset}/date=2026-01-01/hour=00/batch-{batch_id:012d}.parquet"
    lake.s3.put_object(Bucket=lake.bucket, Key=key, Body=body)
    put_marker(
        lake.s3,
        lake.bucket,
        CommitMarker(
            dataset=dataset,
            batch_id=batch_id,
            objects=[CommittedObject(key=key, rows=1)],
            committed_at=datetime.now(UTC),
        ),
    )
    return commit_marker_key(dataset, batch_id)


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def test_poison_batches_are_quarantined_and_later_batches_still_load(
    shared_lake: Lake, loaders: LoaderFactory
) -> None:
    lake = shared_lake
    now = datetime.now(UTC)
    good = build_batches(now - timedelta(minutes=30), now, 600, 2, seed=31)
    loader = loaders(lake.loader_env())

    events_row = good[0].rows["events"][0]
    poison = {
        # Not Parquet at all.
        _poison_marker(lake, "sessions", 1, b"definitely not parquet"): "unreadable Parquet",
        # Parquet, but a column is missing.
        _poison_marker(
            lake,
            "event_counts_minute",
            1,
            _parquet(
                to_table(EVENT_COUNTS_MINUTE, good[0].rows["event_counts_minute"][:1]).drop_columns(
                    ["unique_users"]
                )
            ),
        ): "missing column 'unique_users'",
        # Valid Parquet the database refuses: properties is not JSON.
        _poison_marker(
            lake,
            "events",
            1,
            _parquet(to_table(EVENTS, [events_row | {"properties": "{not json", "batch_id": 1}])),
        ): "refused by the warehouse",
    }
    # A marker that is not a commit marker at all.
    bad_marker = commit_marker_key("sessions", 2)
    lake.s3.put_object(Bucket=lake.bucket, Key=bad_marker, Body=b'{"dataset": "sessions"}')
    poison[bad_marker] = "not a valid commit marker"

    write_all(lake.s3, lake.bucket, good)
    wait_until_equal(lambda: snapshot(lake), expected_tables(good), 90, "the good batches")

    def quarantined() -> dict[str, str] | None:
        rows = {r[0]: r[6] for r in lake.ledger() if r[4] == "quarantined"}
        return rows if len(rows) == len(poison) else None

    found = wait_for(quarantined, 30, what="every poison batch to be quarantined")
    for key, reason in poison.items():
        assert reason in found[key], (key, found[key])
    with lake.connect() as conn:
        view = conn.execute(
            "SELECT table_name, batch_id, reason FROM analytics.quarantined_batches"
        ).fetchall()
    assert len(view) == len(poison)
    assert loader.metric("loader_quarantined_objects_total") == len(poison)
    # Acknowledged like any other notification: nothing is stuck behind them.
    group = lake.loader_env()["LOADER_CONSUMER_GROUP"]
    wait_for(lambda: group_lag(lake.kafka_bootstrap, group) == 0, 30, what="no pending notices")


def test_the_sweep_loads_batches_whose_notification_was_lost(
    shared_lake: Lake, loaders: LoaderFactory
) -> None:
    lake = shared_lake
    # The loader listens to a topic nobody writes to: every notification is "lost".
    topic = f"loader-silent-{uuid.uuid4().hex[:8]}"
    create_topic(lake.kafka_bootstrap, topic)
    now = datetime.now(UTC)
    batches = build_batches(now - timedelta(minutes=40), now, 800, 3, seed=41)
    loader = loaders(
        lake.loader_env(LOADER_NOTIFICATIONS_TOPIC=topic, LOADER_RECONCILE_INTERVAL_SECONDS="1")
    )
    # An object a processor crashed before committing: no marker names it, it is never read.
    orphan = dict(batches[0].rows["events"][0]) | {"event_id": "orphan", "batch_id": 999}
    lake.s3.put_object(
        Bucket=lake.bucket,
        Key="processed/events/date=2026-01-01/hour=00/batch-000000000999.parquet",
        Body=_parquet(to_table(EVENTS, [orphan])),
    )
    markers = write_all(lake.s3, lake.bucket, batches)
    # Exactly the committed batches: the orphan's row would make the events table differ.
    wait_until_equal(lambda: snapshot(lake), expected_tables(batches), 90, "the swept batches")
    assert loader.metric("loader_reconciled_batches_total") == markers
    # Later sweeps list past the watermark and find nothing more to do.
    sweeps = loader.metric("loader_reconcile_sweeps_total")
    wait_for(
        lambda: loader.metric("loader_reconcile_sweeps_total") >= sweeps + 2,
        30,
        what="two more sweeps",
    )
    assert loader.metric("loader_reconciled_batches_total") == markers
    assert len(lake.ledger()) == markers


# --- SQS: moto's S3 sends real S3 -> SQS notifications ------------------------------------


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[str]:
    """moto_server on a free port (the AWS-only parts: S3 -> SQS notifications, SQS)."""
    port = free_ports(1)[0]
    log = (tmp_path / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/moto-api/", timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, 30, interval=0.2, what="moto_server to answer")
        yield url
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def test_sqs_notifications_load_a_new_batch(
    shared_lake: Lake, loaders: LoaderFactory, moto: str
) -> None:
    lake = shared_lake
    aws = {
        "endpoint_url": moto,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    s3, sqs = boto3.client("s3", **aws), boto3.client("sqs", **aws)
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    queue_url = sqs.create_queue(QueueName="lake-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    # The configuration a deployment applies on AWS (docs/warehouse-loader.md).
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "processed/"}]}},
                }
            ]
        },
    )
    env = lake.loader_env(
        LOADER_NOTIFICATIONS_SOURCE="sqs",
        LOADER_SQS_QUEUE_URL=queue_url,
        LOADER_SQS_ENDPOINT_URL=moto,
        LOADER_SQS_WAIT_SECONDS="1",
        S3_ENDPOINT_URL=moto,
        S3_BUCKET=bucket,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    loader = loaders(env)
    now = datetime.now(UTC)
    batches = build_batches(now - timedelta(minutes=20), now, 400, 1, seed=51)
    # Only sessions and per-minute counts: a new object of two data sets.
    for batch in batches:
        batch.rows = {
            k: v for k, v in batch.rows.items() if k in (SESSIONS.name, "event_counts_minute")
        }
    for batch in batches:
        for dataset, rows in batch.rows.items():
            write_batch(s3, bucket, dataset, batch.batch_id, rows)
    expected = {k: v for k, v in expected_tables(batches).items() if v}

    def loaded() -> bool:
        got = snapshot(lake)
        return all(got[k] == v for k, v in expected.items())

    wait_for(loaded, 60, what="the batches announced over SQS to be loaded")
    assert loader.metric("loader_notifications_skipped_total", reason="test_event") >= 1
    assert loader.metric("loader_batches_loaded_total") == len(expected)

    def queue_empty() -> bool:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return all(int(v) == 0 for v in attributes.values())

    wait_for(queue_empty, 30, what="every SQS message to be deleted after its load")
    ledger = lake.ledger()
    assert sorted(r[2] for r in ledger) == sorted(expected)
    assert json.dumps(sorted(r[4] for r in ledger)) == json.dumps(["loaded"] * len(expected))
