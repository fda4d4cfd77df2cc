"""A warehouse built by an older loader is brought up to the current schema at start-up: the
columns added to the event schema since, the per-source events key, the ranges table.

Real PostgreSQL and the real loader process.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from psycopg.types.json import Jsonb

from clickstream_common.tables import EVENTS, Dialect
from tests.conftest import wait_for
from tests.loader.conftest import LoaderFactory
from tests.loader.harness import Lake, wait_until_equal
from tests.loader.lakedata import build_batches, expected_tables, warehouse_tables, write_all
from warehouse_loader import sql
from warehouse_loader.loader import apply_migrations

pytestmark = pytest.mark.platform

ADDED = ("original_event_time", "event_time_adjusted")


def test_an_older_warehouse_is_migrated_and_keeps_its_rows(
    shared_lake: Lake, loaders: LoaderFactory
) -> None:
    lake = shared_lake
    now = datetime.now(UTC)
    old, new = build_batches(now - timedelta(minutes=40), now, 800, 2, seed=81)
    # A warehouse as the loader left it before this change: versions 1 and 2, the events
    # table keyed by event_id alone and without the columns added to the schema since.
    with lake.connect() as conn:
        apply_migrations(conn, sql.migrations(Dialect.POSTGRES)[:2], Dialect.POSTGRES)
        conn.execute(f"ALTER TABLE analytics.events DROP COLUMN {ADDED[0]}, DROP COLUMN {ADDED[1]}")
        conn.execute("ALTER TABLE analytics.events DROP CONSTRAINT events_pkey")
        conn.execute("ALTER TABLE analytics.events ADD PRIMARY KEY (event_id)")
        # One row it already held.
        row = old.rows["events"][0]
        columns = [c for c in EVENTS.column_names if c not in ADDED]
        names = ", ".join(f'"{c}"' for c in columns)
        conn.execute(
            f"INSERT INTO analytics.events ({names}) VALUES ({', '.join(['%s'] * len(columns))})",
            [_value(row, c) for c in columns],
        )

    loaders(lake.loader_env())
    with lake.connect() as conn:
        found = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'analytics' AND table_name = 'events'"
            ).fetchall()
        }
        key = conn.execute(
            "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i "
            "JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = 'analytics.events'::regclass AND i.indisprimary"
        ).fetchone()
        versions = [r[0] for r in conn.execute("SELECT version FROM analytics.schema_migrations")]
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'analytics'"
            )
        }
    assert set(ADDED) <= found
    assert key == (["source", "event_id"],)
    # Every later version applied once, in order (the older warehouse had 1 and 2).
    assert sorted(versions) == [v for v, _ in sql.migrations(Dialect.POSTGRES)]
    assert "replaced_ranges" in tables

    # Batches load into the migrated warehouse; the row it held keeps its place.
    write_all(lake.s3, lake.bucket, [old, new])

    def snapshot() -> dict[str, object]:
        with lake.connect() as conn:
            return warehouse_tables(conn)

    wait_until_equal(snapshot, expected_tables([old, new]), 120, "the batches after migration")
    wait_for(lambda: len(lake.ledger()) > 0, 10, what="the ledger")


def _value(row: dict[str, object], column: str) -> object:
    value = row.get(column)
    if column == "properties" and isinstance(value, str):
        return Jsonb(json.loads(value))
    return value
