"""Warehouse tables and the processed data sets that feed them.

Each processed data set in the lake has exactly one table of the same name in the warehouse
schema `analytics`. The column lists here drive the Spark output selection, the Parquet files
and the DDL, so the three cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from clickstream_common.schema import (
    PROMOTED_PROPERTIES,
    Column,
    EnrichedEvent,
    LogicalType,
    columns_of,
)

WAREHOUSE_SCHEMA = "analytics"


class Dialect(StrEnum):
    POSTGRES = "postgres"
    REDSHIFT = "redshift"


class MergeMode(StrEnum):
    INSERT_NEW = "insert_new"  # append-only facts: keep the first row per key
    UPSERT_LATEST = "upsert_latest"  # windows that change until final: the newest batch wins


@dataclass(frozen=True)
class ReplaceScope:
    """How a correction replaces the set of rows of a range, not only the rows of its keys.

    A correction batch holds, for each value of `group` it names, every row whose `start`
    lies between the lowest `start` and the highest `end` of its rows for that value; older
    rows of that value in that span are deleted (sessions that a late event merged or moved).
    """

    group: str
    start: str
    end: str


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    merge: MergeMode
    sort_key: str
    dist_key: str | None = None  # Redshift: DISTKEY column; None -> DISTSTYLE ALL (small tables)
    time_column: str = "window_start"  # what the lake partitions the data set by (date/hour)
    replace_scope: ReplaceScope | None = None

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

_PY_TYPES: dict[type, LogicalType] = {
    str: LogicalType.STRING,
    int: LogicalType.LONG,
    float: LogicalType.DOUBLE,
    bool: LogicalType.BOOLEAN,
}


def flattened(columns: tuple[Column, ...]) -> tuple[tuple[tuple[str, ...], Column], ...]:
    """Nested struct fields as flat columns: (("context", "locale"), Column("context_locale"))."""
    flat: list[tuple[tuple[str, ...], Column]] = []
    for column in columns:
        if column.type is LogicalType.STRUCT:
            for path, child in flattened(column.children):
                name = "_".join((column.name, *path))
                flat.append(((column.name, *path), Column(name, child.type, nullable=True)))
        else:
            flat.append(((column.name,), column))
    return tuple(flat)


EVENT_SOURCE_COLUMNS = flattened(columns_of(EnrichedEvent))
"""Every field of the enriched event, flattened; the events table starts with these."""

EVENT_DERIVED_COLUMNS: tuple[Column, ...] = (
    Column("user_key", LogicalType.STRING, nullable=False),
    Column("page_host", LogicalType.STRING),
    Column("page_path", LogicalType.STRING),
    *(Column(f"property_{name}", _PY_TYPES[t]) for name, t in PROMOTED_PROPERTIES.items()),
)
"""Columns the processor computes: the user identity, URL parts, promoted properties."""

EVENTS = TableSpec(
    name="events",
    columns=(
        *(c for _, c in EVENT_SOURCE_COLUMNS),
        *EVENT_DERIVED_COLUMNS,
        BATCH_ID,
    ),
    # An event_id is unique within its source (the write key's): one source cannot shadow
    # another's event by sending its id first.
    key=("source", "event_id"),
    merge=MergeMode.INSERT_NEW,
    sort_key="event_time",
    dist_key="user_key",
    time_column="event_time",
)

_WINDOW = (
    Column("window_start", LogicalType.TIMESTAMP, nullable=False),
    Column("window_end", LogicalType.TIMESTAMP, nullable=False),
)

EVENT_COUNTS_MINUTE = TableSpec(
    name="event_counts_minute",
    columns=(
        *_WINDOW,
        Column("event_type", _event_column("event_type").type, nullable=False),
        Column("events", LogicalType.LONG, nullable=False),
        Column("unique_users", LogicalType.LONG, nullable=False),
        BATCH_ID,
    ),
    key=("window_start", "event_type"),
    merge=MergeMode.UPSERT_LATEST,
    sort_key="window_start",
)

# The length of an active-users window (they slide by a minute): a minute's events count in
# the five windows that contain it, the last of which ends this long after the minute starts.
ACTIVE_USERS_SPAN = timedelta(minutes=5)
ACTIVE_USERS_5M = TableSpec(
    name="active_users_5m",
    columns=(*_WINDOW, Column("active_users", LogicalType.LONG, nullable=False), BATCH_ID),
    key=("window_start",),
    merge=MergeMode.UPSERT_LATEST,
    sort_key="window_start",
)

PAGE_VIEWS_MINUTE = TableSpec(
    name="page_views_minute",
    columns=(
        *_WINDOW,
        Column("page_path", LogicalType.STRING, nullable=False),
        Column("views", LogicalType.LONG, nullable=False),
        Column("unique_visitors", LogicalType.LONG, nullable=False),
        BATCH_ID,
    ),
    key=("window_start", "page_path"),
    merge=MergeMode.UPSERT_LATEST,
    sort_key="window_start",
)

PRODUCT_STATS_MINUTE = TableSpec(
    name="product_stats_minute",
    columns=(
        *_WINDOW,
        Column("product_id", _event_column("product_id").type, nullable=False),
        Column("views", LogicalType.LONG, nullable=False),
        Column("add_to_carts", LogicalType.LONG, nullable=False),
        Column("purchases", LogicalType.LONG, nullable=False),
        Column("units", LogicalType.LONG, nullable=False),
        Column("revenue", LogicalType.DOUBLE, nullable=False),
        BATCH_ID,
    ),
    key=("window_start", "product_id"),
    merge=MergeMode.UPSERT_LATEST,
    sort_key="window_start",
)

SESSIONS = TableSpec(
    name="sessions",
    columns=(
        Column("session_key", LogicalType.STRING, nullable=False),
        Column("user_key", LogicalType.STRING, nullable=False),
        Column("session_start", LogicalType.TIMESTAMP, nullable=False),
        Column("session_end", LogicalType.TIMESTAMP, nullable=False),
        Column("duration_seconds", LogicalType.DOUBLE, nullable=False),
        Column("events", LogicalType.LONG, nullable=False),
        Column("page_views", LogicalType.LONG, nullable=False),
        Column("products_viewed", LogicalType.LONG, nullable=False),
        Column("converted", LogicalType.BOOLEAN, nullable=False),
        Column("revenue", LogicalType.DOUBLE, nullable=False),
        Column("entry_page", LogicalType.STRING),
        Column("exit_page", LogicalType.STRING),
        BATCH_ID,
    ),
    # A session is one user's run of events without a gap longer than the inactivity gap;
    # session_key is a stable hash of (user_key, session_start).
    key=("session_key",),
    merge=MergeMode.UPSERT_LATEST,
    sort_key="session_start",
    dist_key="user_key",
    time_column="session_start",
    replace_scope=ReplaceScope(group="user_key", start="session_start", end="session_end"),
)

ANOMALIES = TableSpec(
    name="anomalies",
    columns=(
        *_WINDOW,
        # e.g. events:checkout:web, conversion:purchase_per_product_view, revenue
        Column("series", LogicalType.STRING, nullable=False),
        Column("observed", LogicalType.DOUBLE, nullable=False),
        Column("expected", LogicalType.DOUBLE, nullable=False),
        Column("expected_low", LogicalType.DOUBLE, nullable=False),
        Column("expected_high", LogicalType.DOUBLE, nullable=False),
        Column("score", LogicalType.DOUBLE, nullable=False),  # signed; |score| >= threshold
        Column("model", LogicalType.STRING, nullable=False),
        Column("detected_at", LogicalType.TIMESTAMP, nullable=False),
        BATCH_ID,
    ),
    # Written by the anomaly detector (not Spark) through clickstream_common.lake_writer; a
    # bucket scored again after a restart replaces its row.
    key=("series", "window_start"),
    merge=MergeMode.UPSERT_LATEST,
    sort_key="window_start",
)

SESSION_INACTIVITY_GAP = timedelta(minutes=30)
"""The pause that ends a session: the default of PROCESSOR_SESSION_GAP, and the gap on which
the warehouse's stitched sessions join a visitor's sessions from before and after login."""

IDENTITIES = TableSpec(
    name="identities",
    columns=(
        # An anonymous id (or a user id that an alias call retired) and the user it belongs to.
        Column("anonymous_id", _event_column("anonymous_id").type, nullable=False),
        Column("user_id", _event_column("user_id").type, nullable=False),
        # The earliest event time at which the two were seen together, in the micro-batch
        # that first linked them, and that event.
        Column("first_seen_at", LogicalType.TIMESTAMP, nullable=False),
        Column("source", LogicalType.STRING, nullable=False),
        Column("event_id", LogicalType.STRING, nullable=False),
        # "event": one event carried both ids (identify, or any call after login);
        # "alias": an alias call named the previous id.
        Column("linked_by", LogicalType.STRING, nullable=False),
        BATCH_ID,
    ),
    # One row per anonymous id, the first link wins: an anonymous id belongs to the first
    # user seen with it (a shared device's later users do not take it over).
    key=("anonymous_id",),
    merge=MergeMode.INSERT_NEW,
    sort_key="anonymous_id",
    # Joined to events and sessions on their user_key, which those tables distribute by.
    dist_key="anonymous_id",
    time_column="first_seen_at",
)

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        EVENTS,
        EVENT_COUNTS_MINUTE,
        ACTIVE_USERS_5M,
        PAGE_VIEWS_MINUTE,
        PRODUCT_STATS_MINUTE,
        SESSIONS,
        IDENTITIES,
        ANOMALIES,
    )
}
"""Every processed data set, by name; each is one warehouse table of the same name."""

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


def quote_identifier(name: str) -> str:
    """A column name as SQL text, always double-quoted: no list of reserved words to keep in
    step with two warehouses (Redshift refuses a bare `timestamp`). Our names are lower case,
    so quoting changes nothing else in PostgreSQL, Redshift or Trino."""
    return '"' + name.replace('"', '""') + '"'


def sql_type(column: Column, dialect: Dialect) -> str:
    return _SQL_TYPES[dialect][column.type]


def qualified(table: TableSpec | str) -> str:
    name = table.name if isinstance(table, TableSpec) else table
    return f"{WAREHOUSE_SCHEMA}.{name}"


def create_table_sql(table: TableSpec, dialect: Dialect) -> str:
    """CREATE TABLE IF NOT EXISTS for a table, in the given dialect (column names quoted)."""
    name = quote_identifier
    lines = [
        f"    {name(c.name)} {sql_type(c, dialect)}{'' if c.nullable else ' NOT NULL'}"
        for c in table.columns
    ]
    lines.append(f"    PRIMARY KEY ({', '.join(name(k) for k in table.key)})")
    body = ",\n".join(lines)
    suffix = ""
    if dialect is Dialect.REDSHIFT:
        if table.dist_key:
            distribution = f"DISTKEY ({name(table.dist_key)})"
        else:
            # Small aggregates: a copy on every node, so joins never redistribute them.
            distribution = "DISTSTYLE ALL"
        suffix = f"\n{distribution}\nSORTKEY ({name(table.sort_key)})"
    return f"CREATE TABLE IF NOT EXISTS {qualified(table)} (\n{body}\n){suffix}"
