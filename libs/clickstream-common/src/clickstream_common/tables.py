"""Warehouse tables and the processed data sets that feed them.

Each processed data set in the lake has exactly one table of the same name in the warehouse
schema `analytics`. The column lists here drive the Spark output selection, the Parquet files
and the DDL, so the three cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from clickstream_common.schema import Column, EnrichedEvent, LogicalType, columns_of

WAREHOUSE_SCHEMA = "analytics"


class Dialect(StrEnum):
    POSTGRES = "postgres"
    REDSHIFT = "redshift"


class MergeMode(StrEnum):
    INSERT_NEW = "insert_new"  # append-only facts: keep the first row per key
    UPSERT_LATEST = "upsert_latest"  # windows that change until final: the newest batch wins


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    merge: MergeMode
    sort_key: str

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _event_column(name: str) -> Column:
    for c in columns_of(EnrichedEvent):
        if c.name == name:
            return c
    raise KeyError(name)


BATCH_ID = Column("batch_id", LogicalType.LONG, nullable=False)
"""The micro-batch that produced a row; an upsert never lets an older batch win."""

EVENT_COUNTS_MINUTE = TableSpec(
    name="event_counts_minute",
    columns=(
        Column("window_start", LogicalType.TIMESTAMP, nullable=False),
        Column("window_end", LogicalType.TIMESTAMP, nullable=False),
        Column("event_type", _event_column("event_type").type, nullable=False),
        Column("events", LogicalType.LONG, nullable=False),
        Column("unique_users", LogicalType.LONG, nullable=False),
        BATCH_ID,
    ),
    key=("window_start", "event_type"),
    merge=MergeMode.UPSERT_LATEST,
    sort_key="window_start",
)

TABLES: dict[str, TableSpec] = {t.name: t for t in (EVENT_COUNTS_MINUTE,)}

_SQL_TYPES: dict[Dialect, dict[LogicalType, str]] = {
    Dialect.POSTGRES: {
        LogicalType.STRING: "TEXT",
        LogicalType.LONG: "BIGINT",
        LogicalType.DOUBLE: "DOUBLE PRECISION",
        LogicalType.BOOLEAN: "BOOLEAN",
        LogicalType.TIMESTAMP: "TIMESTAMPTZ",
        LogicalType.JSON: "JSONB",
    },
    Dialect.REDSHIFT: {
        LogicalType.STRING: "VARCHAR(65535)",
        LogicalType.LONG: "BIGINT",
        LogicalType.DOUBLE: "DOUBLE PRECISION",
        LogicalType.BOOLEAN: "BOOLEAN",
        LogicalType.TIMESTAMP: "TIMESTAMPTZ",
        LogicalType.JSON: "SUPER",
    },
}


def sql_type(column: Column, dialect: Dialect) -> str:
    return _SQL_TYPES[dialect][column.type]


def qualified(table: TableSpec | str) -> str:
    name = table.name if isinstance(table, TableSpec) else table
    return f"{WAREHOUSE_SCHEMA}.{name}"


def create_table_sql(table: TableSpec, dialect: Dialect) -> str:
    """CREATE TABLE IF NOT EXISTS for a table, in the given dialect."""
    lines = [
        f"    {c.name} {sql_type(c, dialect)}{'' if c.nullable else ' NOT NULL'}"
        for c in table.columns
    ]
    lines.append(f"    PRIMARY KEY ({', '.join(table.key)})")
    body = ",\n".join(lines)
    suffix = ""
    if dialect is Dialect.REDSHIFT:
        # Small aggregates: copy to every node so joins never redistribute them.
        suffix = f"\nDISTSTYLE ALL\nSORTKEY ({table.sort_key})"
    return f"CREATE TABLE IF NOT EXISTS {qualified(table)} (\n{body}\n){suffix}"
