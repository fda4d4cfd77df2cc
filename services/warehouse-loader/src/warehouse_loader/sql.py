"""SQL builders: pure functions from table specs to statements, for both dialects.

Column names go through `quote_identifier` in both dialects: always double-quoted, so a
name either warehouse reserves (`timestamp` in Redshift) needs no list.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from clickstream_common.lake import CORRECTION_BATCH_BASE
from clickstream_common.schema import LogicalType
from clickstream_common.tables import (
    ANOMALIES,
    EVENTS,
    PRODUCT_STATS_MINUTE,
    SESSIONS,
    TABLES,
    WAREHOUSE_SCHEMA,
    Dialect,
    MergeMode,
    ReplaceScope,
    TableSpec,
    create_table_sql,
    qualified,
    quote_identifier,
    sql_type,
)
from warehouse_loader.identity_sql import identity_migration, identity_views
from warehouse_loader.rules_sql import purchase_revenue_sql

LEDGER = f"{WAREHOUSE_SCHEMA}.load_ledger"
MIGRATIONS = f"{WAREHOUSE_SCHEMA}.schema_migrations"
REPLACED_RANGES = f"{WAREHOUSE_SCHEMA}.replaced_ranges"

STATUS_LOADED = "loaded"
STATUS_QUARANTINED = "quarantined"

# The current time inside a statement. Redshift's NOW()/CURRENT_TIMESTAMP are leader-node
# only (refused next to table data); GETDATE() is the compute-node equivalent.
_NOW = {Dialect.POSTGRES: "now()", Dialect.REDSHIFT: "GETDATE()"}
# The moment of the ledger write: the load is done and about to commit.
_CLOCK = {Dialect.POSTGRES: "clock_timestamp()", Dialect.REDSHIFT: "GETDATE()"}
_TEXT = {Dialect.POSTGRES: "TEXT", Dialect.REDSHIFT: "VARCHAR(1024)"}
_LONG_TEXT = {Dialect.POSTGRES: "TEXT", Dialect.REDSHIFT: "VARCHAR(4096)"}


def ident(name: str) -> str:
    return quote_identifier(name)


def column_list(table: TableSpec, prefix: str = "") -> str:
    return ", ".join(f"{prefix}{ident(c)}" for c in table.column_names)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --- staging and COPY -------------------------------------------------------------------


def staging_name(table: TableSpec) -> str:
    return f"stage_{table.name}"


def create_staging_sql(table: TableSpec, dialect: Dialect) -> str:
    if dialect is Dialect.POSTGRES:
        # Dropped at commit or rollback: a crash mid-load leaves nothing behind.
        return f"CREATE TEMP TABLE {staging_name(table)} (LIKE {qualified(table)}) ON COMMIT DROP"
    # Redshift matches Parquet columns by position, so the staging table has exactly the
    # data set's columns in order; JSON arrives as text and is parsed during the merge.
    columns = ",\n".join(
        f"    {ident(c.name)} "
        + ("VARCHAR(65535)" if c.type is LogicalType.JSON else sql_type(c, dialect))
        for c in table.columns
    )
    return f"CREATE TEMP TABLE {staging_name(table)} (\n{columns}\n)"


def drop_staging_sql(table: TableSpec) -> str:
    # Redshift temp tables live until the session ends; each load starts from an empty one.
    return f"DROP TABLE IF EXISTS {staging_name(table)}"


def copy_from_stdin_sql(table: TableSpec, target: str | None = None) -> str:
    """PostgreSQL: CSV rows streamed by the loader (Arrow's CSV writer renders them)."""
    into = target or staging_name(table)
    return f"COPY {into} ({column_list(table)}) FROM STDIN (FORMAT csv)"


def copy_from_s3_sql(table: TableSpec, s3_uri: str, iam_role: str, manifest: bool) -> str:
    """Redshift: the cluster reads the Parquet straight from S3 into the staging table."""
    statement = (
        f"COPY {staging_name(table)} FROM {_literal(s3_uri)} "
        f"IAM_ROLE {_literal(iam_role)} FORMAT AS PARQUET"
    )
    return statement + (" MANIFEST" if manifest else "")


def manifest_json(bucket: str, objects: Sequence[tuple[str, int]]) -> bytes:
    """A COPY manifest naming exactly the batch's objects (Parquet needs content_length)."""
    entries = [
        {"url": f"s3://{bucket}/{key}", "mandatory": True, "meta": {"content_length": size}}
        for key, size in objects
    ]
    return json.dumps({"entries": entries}, indent=2).encode()


# --- merge ------------------------------------------------------------------------------


def _key_match(table: TableSpec, left: str, right: str) -> str:
    return " AND ".join(f"{left}.{ident(k)} = {right}.{ident(k)}" for k in table.key)


def merge_sql(table: TableSpec, dialect: Dialect = Dialect.POSTGRES) -> list[str]:
    """Statements that merge the staging rows into the target, in order."""
    if dialect is Dialect.POSTGRES:
        return [_merge_postgres(table)]
    return _merge_redshift(table)


def _winner(table: TableSpec) -> tuple[str, str]:
    """(order of batch_id that puts the winning row first, comparison that lets it replace).

    Upserted windows change until final: the newest batch wins, an older replay never does.
    Insert-only facts keep their first row: the oldest batch wins, whatever the load order.
    """
    if table.merge is MergeMode.INSERT_NEW:
        return "ASC", ">"
    return "DESC", "<="


def _not_replaced(table: TableSpec, row: str) -> str:
    """A staged row that no newer correction has replaced the range of (tables with a
    replace scope): a stream batch loaded after the correction must not bring back a session
    the correction merged away, whatever the load order."""
    scope = table.replace_scope
    if scope is None:
        return ""
    return (
        f"NOT EXISTS (SELECT 1 FROM {REPLACED_RANGES} AS r "
        f"WHERE r.table_name = {_literal(table.name)} "
        f"AND r.group_key = {row}.{ident(scope.group)} "
        f"AND {row}.{ident(scope.start)} BETWEEN r.range_start AND r.range_end "
        f"AND r.batch_id > {row}.batch_id)"
    )


def _merge_postgres(table: TableSpec) -> str:
    target = qualified(table)
    columns = column_list(table)
    key = ", ".join(ident(k) for k in table.key)
    order, replaces = _winner(table)
    updates = ", ".join(
        f"{ident(c)} = EXCLUDED.{ident(c)}" for c in table.column_names if c not in table.key
    )
    source = staging_name(table)
    if table.replace_scope is not None:
        source = f"{source} AS s WHERE {_not_replaced(table, 's')}"
    return (
        f"INSERT INTO {target} ({columns}) "
        f"SELECT DISTINCT ON ({key}) {columns} FROM {source} "
        f"ORDER BY {key}, batch_id {order} "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates} "
        f"WHERE {target}.batch_id {replaces} EXCLUDED.batch_id"
    )


def _merge_redshift(table: TableSpec) -> list[str]:
    # Redshift has no ON CONFLICT and does not enforce keys: delete the rows the batch
    # replaces, then insert one row per key that the target does not hold (any more).
    target = qualified(table)
    stage = staging_name(table)
    key = ", ".join(ident(k) for k in table.key)
    order, replaces = _winner(table)
    values = ", ".join(
        f"JSON_PARSE(s.{ident(c.name)})" if c.type is LogicalType.JSON else f"s.{ident(c.name)}"
        for c in table.columns
    )
    delete = (
        f"DELETE FROM {target} USING {stage} AS s "
        f"WHERE {_key_match(table, target, 's')} AND {target}.batch_id {replaces} s.batch_id"
    )
    ranked = (
        f"SELECT {column_list(table)}, "
        f"ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY batch_id {order}) AS loader_rank "
        f"FROM {stage}"
    )
    not_replaced = _not_replaced(table, "s")
    insert = (
        f"INSERT INTO {target} ({column_list(table)}) "
        f"SELECT {values} FROM ({ranked}) AS s "
        f"LEFT JOIN {target} AS cur ON {_key_match(table, 'cur', 's')} "
        f"WHERE s.loader_rank = 1 AND cur.{ident(table.key[0])} IS NULL"
        + (f" AND {not_replaced}" if not_replaced else "")
    )
    return [delete, insert]


# --- corrections that replace a range -----------------------------------------------------


def _scope(table: TableSpec) -> ReplaceScope:
    if table.replace_scope is None:
        raise ValueError(f"{table.name} has no replace scope")
    return table.replace_scope


def record_replaced_ranges_sql(table: TableSpec, dialect: Dialect = Dialect.POSTGRES) -> str:
    """A correction batch's ranges, one per group (user): from its lowest start to its highest
    end. Run for correction batches only, after their rows are staged."""
    scope = _scope(table)
    statement = (
        f"INSERT INTO {REPLACED_RANGES} (table_name, group_key, range_start, range_end, batch_id) "
        f"SELECT {_literal(table.name)}, {ident(scope.group)}, MIN({ident(scope.start)}), "
        f"MAX({ident(scope.end)}), batch_id FROM {staging_name(table)} "
        f"GROUP BY {ident(scope.group)}, batch_id"
    )
    if dialect is Dialect.POSTGRES:
        # A new version of the same correction marker records the same ranges again.
        statement += " ON CONFLICT DO NOTHING"
    return statement


def delete_replaced_sql(table: TableSpec) -> str:
    """Rows of older batches inside the ranges the staged correction replaces (both dialects;
    the target is named in full because Redshift's DELETE takes no alias)."""
    scope = _scope(table)
    target = qualified(table)
    return (
        f"DELETE FROM {target} USING {REPLACED_RANGES} AS r "
        f"WHERE r.table_name = {_literal(table.name)} "
        f"AND r.batch_id IN (SELECT DISTINCT batch_id FROM {staging_name(table)}) "
        f"AND {target}.{ident(scope.group)} = r.group_key "
        f"AND {target}.{ident(scope.start)} BETWEEN r.range_start AND r.range_end "
        f"AND {target}.batch_id < r.batch_id"
    )


def correction_statements(table: TableSpec, dialect: Dialect, batch_id: int) -> list[str]:
    """What a batch needs before its merge: a correction of a table with a replace scope
    records its ranges and deletes the older rows inside them."""
    if table.replace_scope is None or batch_id < CORRECTION_BATCH_BASE:
        return []
    return [record_replaced_ranges_sql(table, dialect), delete_replaced_sql(table)]


# --- the load ledger --------------------------------------------------------------------

_LEDGER_COLUMNS = (
    "object_key, etag, table_name, batch_id, rows_loaded, status, reason, marker_created_at"
)


def claim_ledger_sql() -> str:
    """PostgreSQL: claim a marker version for this transaction; no row back: done already.

    A second loader claiming the same marker blocks on the unique key until the first
    commits (then gets nothing) or rolls back (then claims it).
    """
    return (
        f"INSERT INTO {LEDGER} ({_LEDGER_COLUMNS}) "
        f"VALUES (%s, %s, %s, %s, 0, '{STATUS_LOADED}', NULL, %s) "
        "ON CONFLICT (object_key, etag) DO NOTHING RETURNING 1"
    )


def lock_ledger_sql() -> str:
    """Redshift: serialise ledger claims (no unique keys there) until this load commits."""
    return f"LOCK {LEDGER}"


def ledger_status_sql() -> str:
    return f"SELECT status FROM {LEDGER} WHERE object_key = %s AND etag = %s"


def insert_ledger_sql(status: str = STATUS_LOADED) -> str:
    """Redshift: the claim row, written after the lock showed no row for this version."""
    return (
        f"INSERT INTO {LEDGER} ({_LEDGER_COLUMNS}) VALUES (%s, %s, %s, %s, 0, '{status}', NULL, %s)"
    )


def finish_ledger_sql(dialect: Dialect = Dialect.POSTGRES) -> str:
    return (
        f"UPDATE {LEDGER} SET rows_loaded = %s, loaded_at = {_CLOCK[dialect]} "
        "WHERE object_key = %s AND etag = %s"
    )


def quarantine_sql(dialect: Dialect = Dialect.POSTGRES) -> str:
    """Record a marker version that cannot be loaded, with its reason; loaded never again.

    Deleting the row lets the next reconciliation sweep try it again.
    """
    statement = (
        f"INSERT INTO {LEDGER} ({_LEDGER_COLUMNS}, loaded_at) "
        f"VALUES (%s, %s, %s, %s, 0, '{STATUS_QUARANTINED}', %s, %s, {_CLOCK[dialect]})"
    )
    if dialect is Dialect.POSTGRES:
        statement += " ON CONFLICT (object_key, etag) DO NOTHING"
    return statement


def recorded_markers_sql() -> str:
    """Marker versions of one table the ledger holds between two keys (the sweep's watermark
    and the end of the kind of marker it sweeps)."""
    return (
        f"SELECT object_key, etag FROM {LEDGER} "
        "WHERE table_name = %s AND object_key > %s AND object_key < %s"
    )


# --- migrations -------------------------------------------------------------------------


def create_migrations_table_sql() -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS} "
        "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
    )


def record_migration_sql(dialect: Dialect) -> str:
    return f"INSERT INTO {MIGRATIONS} (version, applied_at) VALUES (%s, {_NOW[dialect]})"


def migration_lock_sql(dialect: Dialect) -> str:
    """Two loaders starting together apply each version once."""
    if dialect is Dialect.POSTGRES:
        return "SELECT pg_advisory_xact_lock(hashtext('clickstream-migrations'))"
    return f"LOCK {MIGRATIONS}"


def _ledger_v1(dialect: Dialect) -> str:
    text = _TEXT[dialect]
    return f"""CREATE TABLE IF NOT EXISTS {LEDGER} (
    object_key {text} NOT NULL,
    etag {text} NOT NULL,
    table_name {text} NOT NULL,
    batch_id BIGINT NOT NULL,
    rows_loaded BIGINT NOT NULL,
    loaded_at TIMESTAMPTZ NOT NULL DEFAULT {_NOW[dialect]},
    PRIMARY KEY (object_key, etag)
)"""


def _ledger_v2(dialect: Dialect) -> list[str]:
    if_missing = "IF NOT EXISTS " if dialect is Dialect.POSTGRES else ""
    return [
        f"ALTER TABLE {LEDGER} ADD COLUMN {if_missing}status {_TEXT[dialect]} "
        f"NOT NULL DEFAULT '{STATUS_LOADED}'",
        f"ALTER TABLE {LEDGER} ADD COLUMN {if_missing}reason {_LONG_TEXT[dialect]}",
        # The processor's commit time: loaded_at minus this is the load lag.
        f"ALTER TABLE {LEDGER} ADD COLUMN {if_missing}marker_created_at TIMESTAMPTZ",
    ]


def _postgres_indexes() -> list[str]:
    # The PostgreSQL counterparts of Redshift's sort and distribution keys; the aggregates'
    # primary keys already lead with window_start.
    events, sessions = qualified(EVENTS), qualified(SESSIONS)
    return [
        f"CREATE INDEX IF NOT EXISTS events_event_time_idx ON {events} (event_time)",
        f"CREATE INDEX IF NOT EXISTS events_user_key_idx ON {events} (user_key, event_time)",
        f"CREATE INDEX IF NOT EXISTS events_type_time_idx ON {events} (event_type, event_time)",
        f"CREATE INDEX IF NOT EXISTS sessions_start_idx ON {sessions} (session_start)",
        f"CREATE INDEX IF NOT EXISTS sessions_user_key_idx ON {sessions} (user_key)",
        f"CREATE INDEX IF NOT EXISTS product_stats_product_idx "
        f"ON {qualified(PRODUCT_STATS_MINUTE)} (product_id, window_start)",
        f"CREATE INDEX IF NOT EXISTS load_ledger_table_idx ON {LEDGER} (table_name, object_key)",
        f"CREATE INDEX IF NOT EXISTS load_ledger_quarantined_idx ON {LEDGER} (table_name) "
        f"WHERE status = '{STATUS_QUARANTINED}'",
    ]


def _rate(numerator: str, denominator: str) -> str:
    return f"CAST({numerator} AS DOUBLE PRECISION) / NULLIF({denominator}, 0)"


def bi_views(dialect: Dialect) -> list[str]:
    """Views analysts and BI tools query; the same definitions in both dialects."""
    now = _NOW[dialect]
    minute = f"DATE_TRUNC('minute', {now})"
    schema = WAREHOUSE_SCHEMA

    def users(event_type: str) -> str:
        return f"COUNT(DISTINCT CASE WHEN event_type = '{event_type}' THEN user_key END)"

    def recent(column: str, cast: str = "BIGINT") -> str:
        return (
            f"CAST(SUM(CASE WHEN window_start >= {minute} - INTERVAL '4 minutes' "
            f"THEN {column} ELSE 0 END) AS {cast})"
        )

    def total(column: str) -> str:
        # SUM of BIGINT is NUMERIC in PostgreSQL; BI tools read counts better as BIGINT.
        return f"CAST(SUM({column}) AS BIGINT)"

    live_users = f"""CREATE OR REPLACE VIEW {schema}.live_users AS
SELECT
    COUNT(DISTINCT user_key) AS users_last_5m,
    COUNT(DISTINCT CASE WHEN event_time >= {now} - INTERVAL '1 minute' THEN user_key END)
        AS users_last_1m,
    COUNT(*) AS events_last_5m,
    COUNT(DISTINCT session_id) AS sessions_last_5m,
    {now} AS as_of
FROM {schema}.events
WHERE event_time >= {now} - INTERVAL '5 minutes'"""

    # The current minute and the four before it (5m), or the 59 before it (60m).
    trending = f"""CREATE OR REPLACE VIEW {schema}.trending_products AS
SELECT
    product_id,
    {recent("views")} AS views_5m,
    {total("views")} AS views_60m,
    {recent("add_to_carts")} AS add_to_carts_5m,
    {total("add_to_carts")} AS add_to_carts_60m,
    {recent("purchases")} AS purchases_5m,
    {total("purchases")} AS purchases_60m,
    {recent("revenue", "DOUBLE PRECISION")} AS revenue_5m,
    SUM(revenue) AS revenue_60m,
    RANK() OVER (ORDER BY {recent("views")} DESC) AS views_rank_5m,
    RANK() OVER (ORDER BY SUM(views) DESC) AS views_rank_60m
FROM {schema}.product_stats_minute
WHERE window_start >= {minute} - INTERVAL '59 minutes'
GROUP BY product_id"""

    funnel = f"""CREATE OR REPLACE VIEW {schema}.conversion_funnel_hourly AS
SELECT
    DATE_TRUNC('hour', event_time) AS hour,
    COUNT(DISTINCT user_key) AS visitors,
    {users("product_view")} AS product_viewers,
    {users("add_to_cart")} AS cart_adders,
    {users("checkout")} AS checkout_starters,
    {users("purchase")} AS purchasers,
    COUNT(DISTINCT CASE WHEN event_type = 'purchase' THEN property_order_id END) AS orders,
    SUM({purchase_revenue_sql()}) AS revenue,
    {_rate(users("add_to_cart"), users("product_view"))} AS view_to_cart_rate,
    {_rate(users("checkout"), users("add_to_cart"))} AS cart_to_checkout_rate,
    {_rate(users("purchase"), users("checkout"))} AS checkout_to_purchase_rate,
    {_rate(users("purchase"), "COUNT(DISTINCT user_key)")} AS conversion_rate
FROM {schema}.events
GROUP BY DATE_TRUNC('hour', event_time)"""

    sessions_daily = f"""CREATE OR REPLACE VIEW {schema}.sessions_daily AS
SELECT
    DATE_TRUNC('day', session_start) AS day,
    COUNT(*) AS sessions,
    COUNT(DISTINCT user_key) AS users,
    AVG(duration_seconds) AS avg_duration_seconds,
    AVG(CAST(events AS DOUBLE PRECISION)) AS avg_events,
    {_rate("SUM(CASE WHEN page_views <= 1 THEN 1 ELSE 0 END)", "COUNT(*)")} AS bounce_rate,
    {_rate("SUM(CASE WHEN converted THEN 1 ELSE 0 END)", "COUNT(*)")} AS conversion_rate,
    SUM(revenue) AS revenue
FROM {schema}.sessions
GROUP BY DATE_TRUNC('day', session_start)"""

    pages_hourly = f"""CREATE OR REPLACE VIEW {schema}.page_views_hourly AS
SELECT
    DATE_TRUNC('hour', window_start) AS hour,
    page_path,
    {total("views")} AS views,
    MAX(unique_visitors) AS peak_minute_visitors
FROM {schema}.page_views_minute
GROUP BY DATE_TRUNC('hour', window_start), page_path"""

    quarantined = f"""CREATE OR REPLACE VIEW {schema}.quarantined_batches AS
SELECT table_name, batch_id, object_key AS marker_key, etag, reason, loaded_at AS quarantined_at
FROM {LEDGER}
WHERE status = '{STATUS_QUARANTINED}'"""

    # The view as it is now: v3 recreates it with the same text (corrections counted apart).
    freshness = load_status_view(dialect)

    return [live_users, trending, funnel, sessions_daily, pages_hourly, quarantined, freshness]


def _replaced_ranges_v5(dialect: Dialect) -> str:
    group = "TEXT" if dialect is Dialect.POSTGRES else "VARCHAR(65535)"
    suffix = (
        "\nDISTKEY (group_key)\nSORTKEY (table_name, group_key)"
        if dialect is Dialect.REDSHIFT
        else ""
    )
    return f"""CREATE TABLE IF NOT EXISTS {REPLACED_RANGES} (
    table_name {_TEXT[dialect]} NOT NULL,
    group_key {group} NOT NULL,
    range_start TIMESTAMPTZ NOT NULL,
    range_end TIMESTAMPTZ NOT NULL,
    batch_id BIGINT NOT NULL,
    PRIMARY KEY (table_name, group_key, range_start, batch_id)
){suffix}"""


def _events_key_v5(dialect: Dialect) -> list[str]:
    """The events key becomes (source, event_id): an event_id is unique within its source."""
    key = ", ".join(ident(k) for k in EVENTS.key)
    events = qualified(EVENTS)
    if dialect is Dialect.POSTGRES:
        return [
            f"ALTER TABLE {events} DROP CONSTRAINT IF EXISTS events_pkey",
            f"ALTER TABLE {events} ADD CONSTRAINT events_pkey PRIMARY KEY ({key})",
        ]
    # Redshift does not enforce keys (the merge does); the declared key informs its planner.
    return [
        f"ALTER TABLE {events} DROP CONSTRAINT events_pkey",
        f"ALTER TABLE {events} ADD CONSTRAINT events_pkey PRIMARY KEY ({key})",
    ]


def load_status_view(dialect: Dialect) -> str:
    """load_status with corrections counted apart: last_batch_id stays the stream's."""
    schema = WAREHOUSE_SCHEMA
    loaded = f"status = '{STATUS_LOADED}'"
    stream = f"batch_id < {CORRECTION_BATCH_BASE}"

    def total(column: str) -> str:
        return f"CAST(SUM({column}) AS BIGINT)"

    return f"""CREATE OR REPLACE VIEW {schema}.load_status AS
SELECT
    table_name,
    {total(f"CASE WHEN {loaded} THEN 1 ELSE 0 END")} AS batches_loaded,
    {total(f"CASE WHEN status = '{STATUS_QUARANTINED}' THEN 1 ELSE 0 END")}
        AS batches_quarantined,
    {total("rows_loaded")} AS rows_loaded,
    MAX(CASE WHEN {loaded} AND {stream} THEN batch_id END) AS last_batch_id,
    MAX(CASE WHEN {loaded} THEN loaded_at END) AS last_loaded_at,
    {total(f"CASE WHEN {loaded} AND NOT {stream} THEN 1 ELSE 0 END")} AS corrections_loaded,
    MAX(CASE WHEN {loaded} AND NOT {stream} THEN loaded_at END) AS last_corrected_at
FROM {LEDGER}
GROUP BY table_name"""


# --- schema evolution ---------------------------------------------------------------------


class SchemaEvolutionError(Exception):
    """The warehouse lacks a column that cannot be added without a versioned migration."""


def existing_columns_sql() -> str:
    """Every column of the warehouse schema (information_schema: both dialects)."""
    return (
        "SELECT table_name, column_name FROM information_schema.columns "
        f"WHERE table_schema = {_literal(WAREHOUSE_SCHEMA)}"
    )


def evolve_schema_sql(
    existing: Mapping[str, set[str]], dialect: Dialect, tables: Sequence[TableSpec] | None = None
) -> list[str]:
    """Statements that bring a warehouse up to the current TableSpecs (pure).

    Tables added since the warehouse was created are created; columns added to a spec are
    added to its table (nullable: older rows have no value). A NOT NULL column that is
    missing cannot be added to a table with rows: that needs a versioned migration with a
    default, and is refused here.
    """
    statements: list[str] = []
    for spec in tables if tables is not None else TABLES.values():
        have = existing.get(spec.name)
        if have is None:
            statements.append(create_table_sql(spec, dialect))
            continue
        for column in spec.columns:
            if column.name in have:
                continue
            if not column.nullable:
                raise SchemaEvolutionError(
                    f"{qualified(spec)} lacks NOT NULL column {column.name!r}: add it in a "
                    "versioned migration with a default"
                )
            statements.append(
                f"ALTER TABLE {qualified(spec)} ADD COLUMN {ident(column.name)} "
                f"{sql_type(column, dialect)}"
            )
    return statements


def migrations(dialect: Dialect) -> list[tuple[int, list[str]]]:
    """Versioned, idempotent schema steps; applied in order, each once."""
    v1 = [
        f"CREATE SCHEMA IF NOT EXISTS {WAREHOUSE_SCHEMA}",
        *(create_table_sql(t, dialect) for t in TABLES.values()),
        _ledger_v1(dialect),
    ]
    v2 = [
        *_ledger_v2(dialect),
        *(_postgres_indexes() if dialect is Dialect.POSTGRES else []),
        *bi_views(dialect),
    ]
    # Tables added after v1 (v1 creates every table of TABLES on a new warehouse; these
    # reach warehouses created before them).
    v3 = [create_table_sql(ANOMALIES, dialect)]
    # v4: the identity map (for warehouses created before it), stitched views and user
    # traits (identity_sql.py).
    # v5: the per-source events key, the ranges corrections replace, load_status by kind.
    v5 = [
        *_events_key_v5(dialect),
        _replaced_ranges_v5(dialect),
        load_status_view(dialect),
    ]
    # v6: one revenue rule (clickstream_common.schema.purchase_revenue) in the views that sum
    # the events' revenue: a purchase without `revenue` earns price x quantity there too.
    v6 = [
        next(v for v in bi_views(dialect) if ".conversion_funnel_hourly AS" in v),
        *(v for v in identity_views(dialect) if ".stitched_users AS" in v),
    ]
    return [(1, v1), (2, v2), (3, v3), (4, identity_migration(dialect)), (5, v5), (6, v6)]
