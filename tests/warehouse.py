"""The warehouse's aggregate tables read back in the shapes that
`tests.processor.streamdata.expected_windows` and `expected_sessions` compute independently,
so a test compares the two with `==`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

WINDOW_TABLES = {
    "event_counts_minute": ("window_start, event_type", "events, unique_users"),
    "active_users_5m": ("window_start", "active_users"),
    "page_views_minute": ("window_start, page_path", "views, unique_visitors"),
    "product_stats_minute": (
        "window_start, product_id",
        "views, add_to_carts, purchases, units, round(revenue::numeric, 6)::float8",
    ),
}


def warehouse_windows(dsn: str, start: datetime, end: datetime) -> dict[str, dict[Any, Any]]:
    """The windowed tables' rows starting in [start, end), shaped like `expected_windows`."""
    result: dict[str, dict[Any, Any]] = {}
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        for table, (key, values) in WINDOW_TABLES.items():
            rows = conn.execute(
                f"SELECT {key}, {values} FROM analytics.{table} "
                "WHERE window_start >= %s AND window_start < %s",
                (start, end),
            ).fetchall()
            width = len(key.split(","))
            result[table] = {tuple(r[:width]): tuple(r[width:]) for r in rows}
    return result


def warehouse_sessions(dsn: str, users: set[str]) -> dict[str, tuple[Any, ...]]:
    """The sessions of `users`, shaped like `expected_sessions`."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        rows = conn.execute(
            "SELECT session_key, user_key, session_start, session_end, duration_seconds, events, "
            "page_views, products_viewed, converted, round(revenue::numeric, 6)::float8, "
            "entry_page, exit_page FROM analytics.sessions WHERE user_key = ANY(%s)",
            (list(users),),
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def in_period(
    expected: dict[str, dict[Any, Any]], start: datetime, end: datetime
) -> dict[str, dict[Any, Any]]:
    """The expected windows that start in [start, end) (what `warehouse_windows` reads)."""
    return {
        table: {k: v for k, v in rows.items() if start <= k[0] < end}
        for table, rows in expected.items()
    }
