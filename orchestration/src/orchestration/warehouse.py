"""The warehouse as the batch jobs see it: a connection, and what the load ledger says."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from clickstream_common.tables import Dialect
from orchestration.settings import Settings
from warehouse_loader.sql import LEDGER
from warehouse_loader.sql import STATUS_LOADED as LOADED
from warehouse_loader.sql import STATUS_QUARANTINED as QUARANTINED

__all__ = ["LEDGER", "LOADED", "QUARANTINED"]
# Redshift has no arrays: key lists go as IN (...) in slices of this many parameters.
_IN_SLICE = 500


@contextmanager
def connect(settings: Settings, application: str = "clickstream-orchestration") -> Iterator[Any]:
    """An autocommit connection; PostgreSQL sessions in UTC (timestamps come back zoned)."""
    conn = psycopg.connect(
        settings.warehouse_dsn, autocommit=True, connect_timeout=10, application_name=application
    )
    try:
        if settings.warehouse_dialect is Dialect.POSTGRES:
            conn.execute("SET TIME ZONE 'UTC'")
        yield conn
    finally:
        conn.close()


def slices(items: list[str], size: int = _IN_SLICE) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def in_list(count: int) -> str:
    return "(" + ", ".join(["%s"] * count) + ")"


def marker_statuses(conn: Any, marker_keys: Iterable[str]) -> dict[str, str]:
    """For each marker key the ledger knows: `quarantined` if any version of it is,
    else `loaded`. Keys the ledger does not hold are absent."""
    keys = sorted(set(marker_keys))
    found: dict[str, str] = {}
    for part in slices(keys):
        rows = conn.execute(
            f"SELECT object_key, status FROM {LEDGER} WHERE object_key IN {in_list(len(part))}",
            part,
        ).fetchall()
        for key, status in rows:
            if found.get(key) != QUARANTINED:
                found[str(key)] = str(status)
    return found


def recorded_versions(conn: Any, marker_keys: Iterable[str]) -> set[tuple[str, str]]:
    """(marker key, etag) of every version of these markers the ledger holds."""
    keys = sorted(set(marker_keys))
    found: set[tuple[str, str]] = set()
    for part in slices(keys):
        rows = conn.execute(
            f"SELECT object_key, etag FROM {LEDGER} WHERE object_key IN {in_list(len(part))}",
            part,
        ).fetchall()
        found.update((str(k), str(e)) for k, e in rows)
    return found
