"""Identity stitching and traits in the warehouse.

* The views on static rows in a database of their own (exact values, every edge).
* The journey the stack was started with (anonymous browsing, login, purchase, sent with
  Segment's Python SDK): one stitched user in the identity map, the stitched views and
  `analytics.users`.
* A CRM export imported with the CLI: latest traits per user and their history.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from clickstream_common.tables import Dialect
from clickstream_simulator.crm_import import main as crm_import
from tests.conftest import wait_for
from tests.trackers.conftest import CRM_KEY, TrackerStack
from warehouse_loader.loader import apply_migrations
from warehouse_loader.sql import migrations

pytestmark = pytest.mark.platform

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def scratch_warehouse(tracker_stack: TrackerStack) -> Iterator[psycopg.Connection[Any]]:
    """A database of its own on the stack's PostgreSQL, migrated like the warehouse."""
    name = f"views_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(tracker_stack.dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    dsn = psycopg.conninfo.make_conninfo(tracker_stack.dsn, dbname=name)
    try:
        with psycopg.connect(dsn, row_factory=dict_row) as conn:
            apply_migrations(conn, migrations(Dialect.POSTGRES))
            yield conn
    finally:
        with psycopg.connect(tracker_stack.dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def insert_event(
    conn: psycopg.Connection[Any], event_id: str, minute: float, **fields: Any
) -> None:
    row = {
        "event_id": event_id,
        "event_type": "page_view",
        "timestamp": at(minute),
        "event_time": at(minute),
        "received_at": at(minute),
        "source": "web",
        "future_dated": False,
        "batch_id": 1,
        **fields,
    }
    row["user_key"] = row.get("user_id") or row["anonymous_id"]
    names = ", ".join(f'"{k}"' for k in row)
    marks = ", ".join(["%s"] * len(row))
    conn.execute(f"INSERT INTO analytics.events ({names}) VALUES ({marks})", list(row.values()))


def insert_session(
    conn: psycopg.Connection[Any], key: str, user_key: str, start: float, end: float, **fields: Any
) -> None:
    row = {
        "session_key": key,
        "user_key": user_key,
        "session_start": at(start),
        "session_end": at(end),
        "duration_seconds": (end - start) * 60,
        "events": 2,
        "page_views": 1,
        "products_viewed": 0,
        "converted": False,
        "revenue": 0.0,
        "entry_page": None,
        "exit_page": None,
        "batch_id": 1,
        **fields,
    }
    names = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    conn.execute(f"INSERT INTO analytics.sessions ({names}) VALUES ({marks})", list(row.values()))


def link(conn: psycopg.Connection[Any], anonymous_id: str, user_id: str, minute: float) -> None:
    conn.execute(
        "INSERT INTO analytics.identities VALUES (%s, %s, %s, 'web', %s, 'event', 1)",
        (anonymous_id, user_id, at(minute), f"link-{anonymous_id}"),
    )


def test_stitched_views_on_static_rows(scratch_warehouse: psycopg.Connection[Any]) -> None:
    conn = scratch_warehouse
    # u1: anonymous on a laptop (a1), logs in; later on a phone (a2), anonymous then known.
    insert_event(conn, "e1", 0, anonymous_id="a1")
    insert_event(conn, "e2", 5, anonymous_id="a1", user_id="u1", event_type="identify",
                 properties='{"traits": {"plan": "pro"}}')  # fmt: skip
    insert_event(conn, "e3", 6, anonymous_id="a1", user_id="u1", event_type="purchase",
                 revenue=30.0)  # fmt: skip
    insert_event(conn, "e4", 200, anonymous_id="a2")
    insert_event(conn, "e5", 201, anonymous_id="a2", user_id="u1", event_type="identify",
                 properties='{"traits": {"plan": "team", "seats": 5}}')  # fmt: skip
    insert_event(conn, "e6", 7, anonymous_id="a3")  # never logs in
    link(conn, "a1", "u1", 5)
    link(conn, "a2", "u1", 201)
    # Sessions as the processor writes them: split at each login.
    insert_session(conn, "s1", "a1", 0, 4, entry_page="/", exit_page="/login")
    insert_session(conn, "s2", "u1", 5, 6, converted=True, revenue=30.0, page_views=0)
    insert_session(conn, "s3", "a2", 200, 200, entry_page="/app", exit_page="/app")
    insert_session(conn, "s4", "u1", 201, 202, page_views=0)
    insert_session(conn, "s5", "u1", 233, 240, entry_page="/late", exit_page="/bye")  # 31 min
    insert_session(conn, "s6", "a3", 7, 8, entry_page="/x", exit_page="/x")

    keys = {
        r["event_id"]: r["stitched_user_key"]
        for r in conn.execute("SELECT event_id, stitched_user_key FROM analytics.stitched_events")
    }
    assert keys == {"e1": "u1", "e2": "u1", "e3": "u1", "e4": "u1", "e5": "u1", "e6": "a3"}

    users = {
        r["stitched_user_key"]: r
        for r in conn.execute("SELECT * FROM analytics.stitched_users").fetchall()
    }
    assert set(users) == {"u1", "a3"}
    assert (users["u1"]["merged_keys"], users["u1"]["events"], users["u1"]["purchases"]) == (
        3,
        5,
        1,
    )
    assert users["u1"]["revenue"] == 30.0

    sessions = conn.execute(
        "SELECT * FROM analytics.stitched_sessions ORDER BY stitched_user_key, session_start"
    ).fetchall()
    summary = [
        (s["stitched_user_key"], s["session_start"], s["session_end"], s["sessions_joined"],
         s["user_keys"], s["converted"], s["entry_page"], s["exit_page"])
        for s in sessions
    ]  # fmt: skip
    assert summary == [
        ("a3", at(7), at(8), 1, 1, False, "/x", "/x"),
        # Anonymous browsing and the purchase after login: one session of u1.
        ("u1", at(0), at(6), 2, 2, True, "/", "/login"),
        # The phone, before and after login; the visit 31 minutes later is a new session.
        ("u1", at(200), at(202), 2, 2, False, "/app", "/app"),
        ("u1", at(233), at(240), 1, 1, False, "/late", "/bye"),
    ]
    first = sessions[1]
    assert first["stitched_session_key"] == "s1" and first["duration_seconds"] == 360.0

    users_view = conn.execute("SELECT * FROM analytics.users").fetchall()
    assert len(users_view) == 1
    (u1,) = users_view
    assert u1["user_id"] == "u1" and u1["traits"] == {"plan": "team", "seats": 5}
    assert (u1["traits_updated_at"], u1["first_identified_at"], u1["identify_calls"]) == (
        at(201),
        at(5),
        2,
    )
    history = conn.execute(
        "SELECT traits FROM analytics.user_traits WHERE user_id = 'u1' ORDER BY identified_at"
    ).fetchall()
    assert [h["traits"] for h in history] == [{"plan": "pro"}, {"plan": "team", "seats": 5}]


def test_the_journey_is_one_stitched_user_and_one_session(tracker_stack: TrackerStack) -> None:
    journey = tracker_stack.journey
    events = tracker_stack.wait_for_events("anonymous_id = %s", journey.anonymous_id, count=5)
    assert sorted(e["event_id"] for e in events) == sorted(journey.message_ids)
    # Live figures count the visitor under two keys: anonymous before login, user after.
    assert {e["user_key"] for e in events} == {journey.anonymous_id, journey.user_id}

    identity = tracker_stack.identity(journey.anonymous_id)
    assert identity["user_id"] == journey.user_id
    assert identity["first_seen_at"] == journey.started + timedelta(seconds=120)  # the login
    assert identity["linked_by"] == "event"

    stitched = tracker_stack.query(
        "SELECT DISTINCT stitched_user_key FROM analytics.stitched_events WHERE event_id = ANY(%s)",
        journey.message_ids,
    )
    assert stitched == [{"stitched_user_key": journey.user_id}]
    (user,) = tracker_stack.query(
        "SELECT * FROM analytics.stitched_users WHERE stitched_user_key = %s", journey.user_id
    )
    assert (user["merged_keys"], user["events"], user["purchases"], user["revenue"]) == (
        2,
        5,
        1,
        80.0,
    )

    # Sessions close a gap (30 min) after their last event: the journey is 50 minutes old.
    sessions = wait_for(
        lambda: (
            (
                found := tracker_stack.query(
                    "SELECT * FROM analytics.sessions WHERE user_key IN (%s, %s)",
                    journey.anonymous_id,
                    journey.user_id,
                )
            )
            and len(found) == 2
            and found
        ),
        timeout=300,
        interval=3,
        what="the journey's two sessions (before and after login)",
    )
    assert sorted(s["events"] for s in sessions) == [2, 3]
    (session,) = tracker_stack.query(
        "SELECT * FROM analytics.stitched_sessions WHERE stitched_user_key = %s", journey.user_id
    )
    assert (session["sessions_joined"], session["events"], session["converted"]) == (2, 5, True)
    assert (session["session_start"], session["session_end"]) == (
        journey.started,
        journey.started + timedelta(seconds=180),
    )
    assert (session["entry_page"], session["exit_page"]) == ("/", "/login")
    assert session["revenue"] == 80.0

    (traits,) = wait_for(
        lambda: tracker_stack.query(
            "SELECT * FROM analytics.users WHERE user_id = %s", journey.user_id
        ),
        timeout=60,
        what="the journey user's traits",
    )
    assert traits["traits"] == {"email": "journey@example.com", "plan": "gold"}


def test_crm_import_gives_latest_traits_and_history(
    tracker_stack: TrackerStack, tmp_path: Path
) -> None:
    user = f"crm-{uuid.uuid4().hex[:8]}"
    export = tmp_path / "customers.csv"
    export.write_text(
        f"customer_id,email,tier,updated_at\n{user},c@example.com,silver,"
        f"{(datetime.now(UTC) - timedelta(hours=2)).isoformat()}\n"
    )
    args = [str(export), "--url", tracker_stack.ingest_url, "--write-key", CRM_KEY,
            "--user-id-field", "customer_id"]  # fmt: skip
    assert crm_import(args) == 0
    assert crm_import(args) == 0  # the same export again: the same event ids
    export.write_text(
        f"customer_id,email,tier,updated_at\n{user},c@example.com,gold,"
        f"{(datetime.now(UTC) - timedelta(hours=1)).isoformat()}\n"
    )
    assert crm_import(args) == 0

    history = wait_for(
        lambda: (
            (
                rows := tracker_stack.query(
                    "SELECT * FROM analytics.user_traits WHERE user_id = %s ORDER BY identified_at",
                    user,
                )
            )
            and len(rows) >= 2
            and rows
        ),
        timeout=240,
        interval=2,
        what="two trait versions",
    )
    assert [h["traits"]["tier"] for h in history] == ["silver", "gold"]
    assert {h["source"] for h in history} == {"crm"}
    (latest,) = tracker_stack.query("SELECT * FROM analytics.users WHERE user_id = %s", user)
    assert latest["traits"] == {"email": "c@example.com", "tier": "gold"}
    assert latest["identify_calls"] == 2
