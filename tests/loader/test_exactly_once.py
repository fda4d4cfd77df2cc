"""Every processed data set lands exactly; replays and reordering change nothing.

Real versitygw S3 (its notifications on the real Kafka topic), real PostgreSQL, the real
loader process. Each test has a bucket and a database of its own on the shared stack.
"""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clickstream_common.tables import TABLES
from tests.conftest import wait_for
from tests.loader.conftest import LoaderFactory
from tests.loader.harness import (
    Lake,
    announced_markers,
    create_topic,
    every_marker_notice,
    group_lag,
    notifications_for,
    publish,
    wait_until_equal,
)
from tests.loader.lakedata import (
    build_batches,
    expected_tables,
    snapshot,
    write_all,
)

pytestmark = pytest.mark.platform


def test_every_data_set_lands_exactly_and_replays_change_nothing(
    shared_lake: Lake, loaders: LoaderFactory
) -> None:
    lake = shared_lake
    now = datetime.now(UTC)
    batches = build_batches(now - timedelta(minutes=150), now, 3000, 8, seed=11)
    expected = expected_tables(batches)
    assert all(expected[name] for name in TABLES)  # every data set has rows

    env = lake.loader_env()  # notifications only: the sweep is off
    loader = loaders(env)
    markers = write_all(lake.s3, lake.bucket, batches)
    wait_until_equal(lambda: snapshot(lake), expected, 120, "every table to hold its rows")
    ledger = lake.ledger()
    assert len(ledger) == markers
    assert {row[4] for row in ledger} == {"loaded"}
    assert loader.metric("loader_batches_loaded_total") == markers

    # Replay every notification of this bucket twice, shuffled, on the real topic.
    group = env["LOADER_CONSUMER_GROUP"]
    wait_for(lambda: group_lag(lake.kafka_bootstrap, group) == 0, 60, what="the loader to catch up")
    notices = notifications_for(lake.kafka_bootstrap, lake.bucket)
    assert announced_markers(notices) == markers
    replay = notices * 2
    random.Random(3).shuffle(replay)
    publish(lake.kafka_bootstrap, "clickstream.s3-events", replay)
    wait_for(
        lambda: group_lag(lake.kafka_bootstrap, group) == 0,
        60,
        what="the loader to consume the replayed notifications",
    )
    assert snapshot(lake) == expected
    assert lake.ledger() == ledger
    assert loader.metric("loader_batches_loaded_total") == markers
    assert loader.metric("loader_notifications_skipped_total", reason="already_loaded") >= markers


def test_notifications_in_any_order_give_the_same_warehouse(
    shared_lake: Lake, loaders: LoaderFactory
) -> None:
    """Newer batches first, duplicates, reordering: upserts converge to the newest batch,
    insert-only rows to the oldest, whatever order the markers are loaded in."""
    lake = shared_lake
    now = datetime.now(UTC)
    batches = build_batches(now - timedelta(minutes=90), now, 2000, 6, seed=23)
    expected = expected_tables(batches)
    markers = write_all(lake.s3, lake.bucket, batches)
    notices = every_marker_notice(lake.kafka_bootstrap, lake.bucket, markers)
    # A topic of our own with one partition delivers exactly the order we choose.
    topic = f"loader-order-{uuid.uuid4().hex[:8]}"
    create_topic(lake.kafka_bootstrap, topic)
    shuffled = notices * 2
    random.Random(5).shuffle(shuffled)
    publish(lake.kafka_bootstrap, topic, shuffled)
    env = lake.loader_env(LOADER_NOTIFICATIONS_TOPIC=topic)
    loaders(env)
    wait_for(
        lambda: group_lag(lake.kafka_bootstrap, env["LOADER_CONSUMER_GROUP"], topic) == 0,
        120,
        what="the loader to consume the shuffled notifications",
    )
    assert snapshot(lake) == expected
    assert len(lake.ledger()) == markers


def test_bi_views_answer_what_an_analyst_asks(shared_lake: Lake, loaders: LoaderFactory) -> None:
    lake = shared_lake
    now = datetime.now(UTC)
    batches = build_batches(now - timedelta(minutes=150), now, 3000, 4, seed=13)
    expected = expected_tables(batches)
    loaders(lake.loader_env())
    write_all(lake.s3, lake.bucket, batches)
    wait_until_equal(lambda: snapshot(lake), expected, 120, "every table to hold its rows")

    with lake.connect() as conn, conn.transaction():
        # now() is fixed for the transaction: the views and this test share one clock.
        [(db_now,)] = conn.execute("SELECT now()").fetchall()
        live = conn.execute(
            "SELECT users_last_5m, users_last_1m, events_last_5m FROM analytics.live_users"
        ).fetchone()
        trending = conn.execute(
            "SELECT product_id, views_5m, views_60m, add_to_carts_60m, views_rank_60m "
            "FROM analytics.trending_products"
        ).fetchall()
        funnel = conn.execute(
            "SELECT hour, visitors, product_viewers, cart_adders, checkout_starters, purchasers, "
            "orders FROM analytics.conversion_funnel_hourly"
        ).fetchall()

    events = [
        dict(zip(TABLES["events"].column_names, v, strict=True))
        for v in expected["events"].values()
    ]
    recent = [e for e in events if e["event_time"] >= db_now - timedelta(minutes=5)]
    last_minute = [e for e in recent if e["event_time"] >= db_now - timedelta(minutes=1)]
    assert live == (
        len({e["user_key"] for e in recent}),
        len({e["user_key"] for e in last_minute}),
        len(recent),
    )
    assert live[0] > 0

    minute = db_now.replace(second=0, microsecond=0)
    spec = TABLES["product_stats_minute"]
    stats = [dict(zip(spec.column_names, v, strict=True)) for v in expected[spec.name].values()]
    hour_rows = [s for s in stats if s["window_start"] >= minute - timedelta(minutes=59)]
    want: dict[str, list[int]] = {}
    for s in hour_rows:
        row = want.setdefault(s["product_id"], [0, 0, 0])
        row[0] += s["views"] if s["window_start"] >= minute - timedelta(minutes=4) else 0
        row[1] += s["views"]
        row[2] += s["add_to_carts"]
    assert {p: [v5, v60, c60] for p, v5, v60, c60, _ in trending} == want
    # Ranked by the last hour's views: more views, smaller (better) rank.
    ranked = sorted((-v60, rank) for _, _, v60, _, rank in trending)
    assert ranked[0][1] == 1
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(ranked))

    def hour_of(e: dict[str, Any]) -> datetime:
        return e["event_time"].replace(minute=0, second=0, microsecond=0)

    want_funnel = {}
    for hour in {hour_of(e) for e in events}:
        in_hour = [e for e in events if hour_of(e) == hour]

        def users(event_type: str | None, rows: list[dict[str, Any]] = in_hour) -> int:
            return len({e["user_key"] for e in rows if event_type in (None, e["event_type"])})

        orders = {e["property_order_id"] for e in in_hour if e["event_type"] == "purchase"}
        want_funnel[hour] = (
            users(None),
            users("product_view"),
            users("add_to_cart"),
            users("checkout"),
            users("purchase"),
            len(orders - {None}),
        )
    assert {row[0]: tuple(row[1:]) for row in funnel} == want_funnel
