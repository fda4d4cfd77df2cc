"""SQL builders: pure functions from table specs to statements."""

from __future__ import annotations

from clickstream_common.tables import (
    TABLES,
    WAREHOUSE_SCHEMA,
    Dialect,
    MergeMode,
    TableSpec,
    create_table_sql,
    qualified,
)

LEDGER = f"{WAREHOUSE_SCHEMA}.load_ledger"
MIGRATIONS = f"{WAREHOUSE_SCHEMA}.schema_migrations"


def staging_name(table: TableSpec) -> str:
    return f"stage_{table.name}"


def create_staging_sql(table: TableSpec) -> str:
    # Dropped at commit: a crash mid-load leaves nothing behind.
    return f"CREATE TEMP TABLE {staging_name(table)} (LIKE {qualified(table)}) ON COMMIT DROP"


def copy_from_stdin_sql(table: TableSpec) -> str:
    return f"COPY {staging_name(table)} ({', '.join(table.column_names)}) FROM STDIN"


def merge_sql(table: TableSpec) -> str:
    """Merge the staging rows into the target (PostgreSQL)."""
    columns = ", ".join(table.column_names)
    key = ", ".join(table.key)
    if table.merge is MergeMode.INSERT_NEW:
        return (
            f"INSERT INTO {qualified(table)} ({columns}) "
            f"SELECT DISTINCT ON ({key}) {columns} FROM {staging_name(table)} "
            f"ORDER BY {key} ON CONFLICT ({key}) DO NOTHING"
        )
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in table.column_names if c not in table.key)
    # Windows change until final: the newest batch wins, an older replay never does.
    return (
        f"INSERT INTO {qualified(table)} ({columns}) "
        f"SELECT DISTINCT ON ({key}) {columns} FROM {staging_name(table)} "
        f"ORDER BY {key}, batch_id DESC "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates} "
        f"WHERE {qualified(table)}.batch_id <= EXCLUDED.batch_id"
    )


def claim_ledger_sql() -> str:
    """Claim an object for this transaction; no row back means it was loaded already.

    A second loader claiming the same object blocks on the unique key until the first
    commits (then gets nothing) or rolls back (then claims it).
    """
    return (
        f"INSERT INTO {LEDGER} (object_key, etag, table_name, batch_id, rows_loaded) "
        "VALUES (%s, %s, %s, %s, 0) ON CONFLICT (object_key, etag) DO NOTHING RETURNING 1"
    )


def finish_ledger_sql() -> str:
    return (
        f"UPDATE {LEDGER} SET rows_loaded = %s, loaded_at = now() "
        "WHERE object_key = %s AND etag = %s"
    )


def migrations(dialect: Dialect) -> list[tuple[int, list[str]]]:
    """Versioned, idempotent schema steps; applied in order, each once."""
    v1 = [
        f"CREATE SCHEMA IF NOT EXISTS {WAREHOUSE_SCHEMA}",
        *(create_table_sql(t, dialect) for t in TABLES.values()),
        f"""CREATE TABLE IF NOT EXISTS {LEDGER} (
    object_key TEXT NOT NULL,
    etag TEXT NOT NULL,
    table_name TEXT NOT NULL,
    batch_id BIGINT NOT NULL,
    rows_loaded BIGINT NOT NULL,
    loaded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (object_key, etag)
)""",
    ]
    return [(1, v1)]


def create_migrations_table_sql() -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS} "
        "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
