"""Destructive tests, each on a platform of its own: two loaders at once, PostgreSQL
restarted mid-load, the loader SIGKILLed mid-transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clickstream_common.lake import commit_marker_key
from tests.conftest import StackFactory, wait_for
from tests.loader.conftest import LoaderFactory
from tests.loader.harness import Lake, copy_in_progress, loader_backends, wait_until_equal
from tests.loader.lakedata import (
    LakeBatch,
    big_events,
    build_batches,
    expected_tables,
    warehouse_tables,
    write_all,
    write_table_batch,
)

pytestmark = pytest.mark.platform

BIG_BATCH = 900
BIG_ROWS = 120_000


@pytest.fixture
def own_lake(stack_factory: StackFactory) -> Iterator[Lake]:
    lake = Lake.create(stack_factory())
    try:
        yield lake
    finally:
        lake.drop()


def snapshot(lake: Lake) -> dict[str, Any]:
    """The warehouse without the big batch's events, and how many of those there are."""
    with lake.connect() as conn:
        tables = warehouse_tables(conn)
        big = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM analytics.events WHERE batch_id = %s",
            (BIG_BATCH,),
        ).fetchone()
    tables["events"] = {k: v for k, v in tables["events"].items() if v[-1] != BIG_BATCH}
    return tables | {"big batch rows": big}


def test_two_loaders_at_once_load_each_batch_once(own_lake: Lake, loaders: LoaderFactory) -> None:
    lake = own_lake
    now = datetime.now(UTC)
    batches = build_batches(now - timedelta(minutes=120), now, 3000, 8, seed=71)
    # Different consumer groups: both loaders see every notification, and both sweep.
    first = loaders(lake.loader_env(LOADER_RECONCILE_INTERVAL_SECONDS="1"), name="first")
    second = loaders(
        lake.loader_env(
            LOADER_RECONCILE_INTERVAL_SECONDS="1",
            LOADER_CONSUMER_GROUP=f"loader-test-{lake.tag}-second",
        ),
        name="second",
    )
    markers = write_all(lake.s3, lake.bucket, batches)
    expected = expected_tables(batches)

    def warehouse() -> dict[str, Any]:
        with lake.connect() as conn:
            return warehouse_tables(conn)

    wait_until_equal(warehouse, expected, 120, "both loaders to finish")
    ledger = lake.ledger()
    assert len(ledger) == markers == len({(r[0], r[1]) for r in ledger})

    def settled() -> bool:
        # Each loader has seen every marker: loaded it, or found it loaded by the other.
        return all(
            p.metric("loader_batches_loaded_total")
            + p.metric("loader_notifications_skipped_total", reason="already_loaded")
            >= markers
            for p in (first, second)
        )

    wait_for(settled, 60, what="both loaders to see every marker")
    loaded = [p.metric("loader_batches_loaded_total") for p in (first, second)]
    assert sum(loaded) == markers, loaded
    assert warehouse() == expected


def _small_batches(now: datetime, seed: int, first_id: int) -> list[LakeBatch]:
    batches = build_batches(now - timedelta(minutes=30), now, 400, 2, seed=seed)
    for i, batch in enumerate(batches):
        batch.batch_id = first_id + i
        for rows in batch.rows.values():
            for row in rows:
                row["batch_id"] = batch.batch_id
    return batches


def test_postgres_restarted_mid_load_leaves_no_gap_and_no_duplicate(
    own_lake: Lake, loaders: LoaderFactory
) -> None:
    lake = own_lake
    now = datetime.now(UTC)
    before = _small_batches(now, 81, 100)
    during = _small_batches(now, 82, 200)
    loader = loaders(lake.loader_env())
    markers = write_all(lake.s3, lake.bucket, before)
    write_table_batch(
        lake.s3, lake.bucket, "events", BIG_BATCH, big_events(BIG_BATCH, BIG_ROWS, now)
    )
    markers += 1
    wait_for(lambda: copy_in_progress(lake), 60, interval=0.05, what="the big COPY to run")

    postgres = lake.stack.components["postgres"]
    postgres.stop()
    markers += write_all(lake.s3, lake.bucket, during)  # notifications while it is down
    postgres.start()

    expected = expected_tables(before + during) | {"big batch rows": (BIG_ROWS, BIG_ROWS)}
    wait_until_equal(lambda: snapshot(lake), expected, 180, "the warehouse after the restart")
    ledger = lake.ledger()
    assert len(ledger) == markers and {r[4] for r in ledger} == {"loaded"}
    assert loader.metric("loader_retries_total") >= 1
    # The big batch itself failed mid-load and was retried (not skipped).
    big_marker = commit_marker_key("events", BIG_BATCH)
    retried = [
        line
        for line in loader.log_path.read_text().splitlines()
        if "retrying" in line and json.loads(line).get("marker") == big_marker
    ]
    assert retried, loader.log_tail()


def test_loader_killed_mid_transaction_leaves_nothing_and_reloads_on_restart(
    own_lake: Lake, loaders: LoaderFactory
) -> None:
    lake = own_lake
    now = datetime.now(UTC)
    small = _small_batches(now, 91, 100)
    env = lake.loader_env()
    loader = loaders(env, name="killed")
    markers = write_all(lake.s3, lake.bucket, small)
    write_table_batch(
        lake.s3, lake.bucket, "events", BIG_BATCH, big_events(BIG_BATCH, BIG_ROWS, now)
    )
    markers += 1
    wait_for(lambda: copy_in_progress(lake), 60, interval=0.05, what="the big COPY to run")
    loader.sigkill()
    wait_for(lambda: loader_backends(lake) == 0, 30, what="PostgreSQL to end the dead session")

    # Nothing of the interrupted transaction is visible: no ledger row, no row of its data.
    big_marker = commit_marker_key("events", BIG_BATCH)
    assert big_marker not in {r[0] for r in lake.ledger()}
    assert snapshot(lake)["big batch rows"] == (0, 0)

    # The notification was never acknowledged: a new loader gets it again and loads it.
    loaders(env, name="restarted")
    expected = expected_tables(small) | {"big batch rows": (BIG_ROWS, BIG_ROWS)}
    wait_until_equal(lambda: snapshot(lake), expected, 180, "the warehouse after the restart")
    ledger = lake.ledger()
    assert len(ledger) == markers and {r[4] for r in ledger} == {"loaded"}
