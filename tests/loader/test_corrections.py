"""Correction batches win over the stream rows they replace, and a newer correction over an
older one, whatever order the loader sees the markers in; a correction of sessions removes
the sessions a late event merged away.

Real versitygw (its notifications), Kafka and PostgreSQL, the real loader process; each order
is loaded into a database of its own.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from clickstream_common.lake import BatchName
from clickstream_common.tables import EVENT_COUNTS_MINUTE, SESSIONS
from tests.conftest import wait_for
from tests.loader.conftest import LoaderFactory
from tests.loader.harness import (
    Lake,
    announced_markers,
    create_topic,
    every_marker_notice,
    group_lag,
    publish,
)
from tests.loader.lakedata import session_key, warehouse_tables, write_batch

pytestmark = pytest.mark.platform

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def session(user: str, start_min: int, end_min: int, events: int, batch: int) -> dict[str, Any]:
    start, end = T0 + timedelta(minutes=start_min), T0 + timedelta(minutes=end_min)
    return {
        "session_key": session_key(user, start),
        "user_key": user,
        "session_start": start,
        "session_end": end,
        "duration_seconds": (end - start).total_seconds(),
        "events": events,
        "page_views": events,
        "products_viewed": 0,
        "converted": False,
        "revenue": 0.0,
        "entry_page": "/",
        "exit_page": "/cart",
        "batch_id": batch,
    }


def minute(start_min: int, events: int, batch: int) -> dict[str, Any]:
    start = T0 + timedelta(minutes=start_min)
    return {
        "window_start": start,
        "window_end": start + timedelta(minutes=1),
        "event_type": "page_view",
        "events": events,
        "unique_users": events,
        "batch_id": batch,
    }


@pytest.fixture
def databases(shared_lake: Lake) -> Iterator[list[str]]:
    """Three more warehouse databases beside the lake's own, dropped at the end."""
    names = [f"{shared_lake.database}_{i}" for i in range(3)]
    with psycopg.connect(shared_lake.admin_dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(f"CREATE DATABASE {name}")
    try:
        yield [shared_lake.admin_dsn.rsplit("/", 1)[0] + f"/{n}" for n in names]
    finally:
        with psycopg.connect(shared_lake.admin_dsn, autocommit=True) as conn:
            for name in names:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_corrections_win_in_any_load_order(
    shared_lake: Lake, loaders: LoaderFactory, databases: list[str]
) -> None:
    lake = shared_lake
    written = datetime.now(UTC)
    older = BatchName.correction(20, written)
    newer = BatchName.correction(30, written + timedelta(seconds=1))
    # The stream closed two sessions of u1 (and one of u2) and counted minute 5 and 50.
    write_batch(
        lake.s3,
        lake.bucket,
        SESSIONS.name,
        10,
        [session("u1", 0, 5, 3, 10), session("u1", 40, 45, 2, 10), session("u2", 0, 9, 4, 10)],
    )
    write_batch(lake.s3, lake.bucket, EVENT_COUNTS_MINUTE.name, 11, [minute(5, 5, 11)])
    write_batch(lake.s3, lake.bucket, EVENT_COUNTS_MINUTE.name, 12, [minute(50, 3, 12)])
    # A first correction (events up to batch 20): a late event extended u1's first session.
    write_batch(
        lake.s3,
        lake.bucket,
        SESSIONS.name,
        older,
        [
            session("u1", 0, 20, 4, older.batch_id),
            session("u1", 40, 45, 2, older.batch_id),
        ],
    )
    write_batch(
        lake.s3, lake.bucket, EVENT_COUNTS_MINUTE.name, older, [minute(5, 6, older.batch_id)]
    )
    # A newer one (events up to batch 30): another late event at minute 30 merged both.
    write_batch(
        lake.s3, lake.bucket, SESSIONS.name, newer, [session("u1", 0, 45, 7, newer.batch_id)]
    )
    write_batch(
        lake.s3, lake.bucket, EVENT_COUNTS_MINUTE.name, newer, [minute(5, 7, newer.batch_id)]
    )
    markers = 7
    notices = every_marker_notice(lake.kafka_bootstrap, lake.bucket, markers)
    assert announced_markers(notices) == markers

    want_sessions = {
        (session("u1", 0, 45, 7, newer.batch_id)["session_key"],),
        (session("u2", 0, 9, 4, 10)["session_key"],),
    }
    want_counts = {
        (T0 + timedelta(minutes=5), "page_view"): 7,
        (T0 + timedelta(minutes=50), "page_view"): 3,
    }

    shuffled = list(notices)
    random.Random(9).shuffle(shuffled)
    orders = {"as written": notices, "reversed": notices[::-1], "shuffled": shuffled}
    for (name, order), dsn in zip(orders.items(), databases, strict=True):
        topic = f"loader-corrections-{uuid.uuid4().hex[:8]}"
        create_topic(lake.kafka_bootstrap, topic)
        publish(lake.kafka_bootstrap, topic, order)
        env = lake.loader_env(
            LOADER_NOTIFICATIONS_TOPIC=topic,
            WAREHOUSE_DSN=dsn,
            LOADER_CONSUMER_GROUP=f"loader-corrections-{uuid.uuid4().hex[:8]}",
        )
        loader = loaders(env, name=f"loader-{name.replace(' ', '-')}")
        wait_for(
            lambda env=env, topic=topic: (
                group_lag(lake.kafka_bootstrap, env["LOADER_CONSUMER_GROUP"], topic) == 0
            ),
            120,
            what=f"the loader to consume the notifications {name}",
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            tables = warehouse_tables(conn)
            ranges = conn.execute(
                "SELECT group_key, batch_id FROM analytics.replaced_ranges ORDER BY batch_id"
            ).fetchall()
            status = conn.execute(
                "SELECT last_batch_id, corrections_loaded FROM analytics.load_status "
                "WHERE table_name = 'sessions'"
            ).fetchone()
        assert set(tables[SESSIONS.name]) == want_sessions, name
        [merged] = [r for r in tables[SESSIONS.name].values() if r[1] == "u1"]
        assert merged[5] == 7 and merged[-1] == newer.batch_id, name
        counts = {k: v[3] for k, v in tables[EVENT_COUNTS_MINUTE.name].items()}
        assert counts == want_counts, name
        assert ranges == [("u1", older.batch_id), ("u1", newer.batch_id)], name
        assert status == (10, 2), name
        assert loader.metric("loader_batches_loaded_total") == markers, name
