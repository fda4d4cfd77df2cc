"""Poison versus unavailable, schema evolution, and the SQL of corrections (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from clickstream_common.lake import CORRECTION_BATCH_BASE, BatchKind, BatchName
from clickstream_common.schema import Column, LogicalType
from clickstream_common.tables import (
    EVENT_COUNTS_MINUTE,
    EVENTS,
    SESSIONS,
    TABLES,
    Dialect,
    MergeMode,
    TableSpec,
)
from warehouse_loader import sql
from warehouse_loader.batches import PoisonBatch
from warehouse_loader.errors import is_unavailable, poison_reason, sqlstate_of
from warehouse_loader.reconcile import key_range, list_start


@pytest.mark.parametrize(
    "error",
    [
        # A page path of a few KB of non-ASCII text in page_views_minute's primary key.
        psycopg.errors.ProgramLimitExceeded(
            "index row size 3160 exceeds btree version 4 maximum 2704 for index "
            '"page_views_minute_pkey"'
        ),
        psycopg.errors.CharacterNotInRepertoire('invalid byte sequence for encoding "UTF8": 0x00'),
        psycopg.errors.UntranslatableCharacter("unsupported Unicode escape sequence"),
        psycopg.errors.StringDataRightTruncation("value too long for type character varying(256)"),
        psycopg.errors.InvalidTextRepresentation("invalid input syntax for type json"),
        psycopg.errors.NotNullViolation('null value in column "user_key"'),
    ],
)
def test_values_the_warehouse_refuses_are_poison_in_both_dialects(error: psycopg.Error) -> None:
    for dialect in Dialect:
        reason = poison_reason(error, dialect)
        assert reason is not None and f"SQLSTATE {error.sqlstate}" in reason
        # 54000 is an OperationalError in psycopg: it must still not be waited on forever.
        assert not is_unavailable(error, dialect)


REDSHIFT_VARCHAR = (
    "Spectrum Scan Error\n  error:  Spectrum Scan Error\n  code:      15007\n"
    "  context:   The length of the data column page_url is longer than the length defined "
    "in the table. Table: 65535, Data: 70001"
)
REDSHIFT_S3 = (
    "Spectrum Scan Error\n  error:  Spectrum Scan Error\n  code:      15001\n"
    "  context:   Error in S3 request: SlowDown, Please reduce your request rate"
)


def test_redshift_internal_errors_are_told_apart_by_their_text() -> None:
    varchar = psycopg.errors.InternalError_(REDSHIFT_VARCHAR)
    load = psycopg.errors.InternalError_(
        "Load into table 'stage_events' failed.  Check 'stl_load_errors' system table for details."
    )
    json_error = psycopg.errors.InternalError_("JSON parsing error")
    for error in (varchar, load, json_error):
        assert poison_reason(error, Dialect.REDSHIFT) is not None
        assert not is_unavailable(error, Dialect.REDSHIFT)
    throttled = psycopg.errors.InternalError_(REDSHIFT_S3)
    assert poison_reason(throttled, Dialect.REDSHIFT) is None
    assert is_unavailable(throttled, Dialect.REDSHIFT)
    # In PostgreSQL an internal error is a bug: retried, then quarantined after max attempts.
    assert poison_reason(varchar, Dialect.POSTGRES) is None
    assert not is_unavailable(varchar, Dialect.POSTGRES)


def test_unavailable_stays_unavailable() -> None:
    assert is_unavailable(psycopg.OperationalError("server closed the connection"))
    assert is_unavailable(psycopg.errors.AdminShutdown("terminating connection"))
    assert poison_reason(psycopg.OperationalError("connection refused")) is None
    assert poison_reason(ValueError("bug")) is None


def test_the_sqlstate_survives_the_quarantine() -> None:
    cause = psycopg.errors.ProgramLimitExceeded("index row size")
    try:
        try:
            raise cause
        except psycopg.Error as exc:
            raise PoisonBatch(str(poison_reason(exc))) from exc
    except PoisonBatch as poison:
        assert sqlstate_of(poison) == "54000"
    assert sqlstate_of(PoisonBatch("not parquet")) == ""


def test_schema_evolution_adds_new_columns_and_tables() -> None:
    have = {t.name: set(t.column_names) for t in TABLES.values() if t is not SESSIONS}
    have[EVENTS.name] -= {"original_event_time", "event_time_adjusted"}
    statements = sql.evolve_schema_sql(have, Dialect.POSTGRES)
    assert statements[:2] == [
        'ALTER TABLE analytics.events ADD COLUMN "original_event_time" TIMESTAMPTZ',
        'ALTER TABLE analytics.events ADD COLUMN "event_time_adjusted" TEXT',
    ]
    assert statements[2].startswith("CREATE TABLE IF NOT EXISTS analytics.sessions (")
    assert len(statements) == 3
    redshift = sql.evolve_schema_sql(have, Dialect.REDSHIFT)
    assert (
        redshift[1]
        == 'ALTER TABLE analytics.events ADD COLUMN "event_time_adjusted" VARCHAR(65535)'
    )
    # Up to date: nothing to do.
    complete = {t.name: set(t.column_names) for t in TABLES.values()}
    assert sql.evolve_schema_sql(complete, Dialect.POSTGRES) == []


def test_a_missing_not_null_column_needs_a_versioned_migration() -> None:
    spec = TableSpec(
        name="widgets",
        columns=(Column("id", LogicalType.STRING, nullable=False),),
        key=("id",),
        merge=MergeMode.UPSERT_LATEST,
        sort_key="id",
    )
    with pytest.raises(sql.SchemaEvolutionError, match="NOT NULL column 'id'"):
        sql.evolve_schema_sql({"widgets": set()}, Dialect.POSTGRES, [spec])


def test_a_correction_of_sessions_replaces_the_ranges_it_covers() -> None:
    correction = CORRECTION_BATCH_BASE + 42
    assert sql.correction_statements(SESSIONS, Dialect.POSTGRES, 42) == []
    assert sql.correction_statements(EVENT_COUNTS_MINUTE, Dialect.POSTGRES, correction) == []
    record, delete = sql.correction_statements(SESSIONS, Dialect.POSTGRES, correction)
    assert record == (
        "INSERT INTO analytics.replaced_ranges "
        "(table_name, group_key, range_start, range_end, batch_id) "
        """SELECT 'sessions', "user_key", MIN("session_start"), MAX("session_end"), batch_id """
        'FROM stage_sessions GROUP BY "user_key", batch_id ON CONFLICT DO NOTHING'
    )
    assert delete == (
        "DELETE FROM analytics.sessions USING analytics.replaced_ranges AS r "
        "WHERE r.table_name = 'sessions' "
        "AND r.batch_id IN (SELECT DISTINCT batch_id FROM stage_sessions) "
        'AND analytics.sessions."user_key" = r.group_key '
        'AND analytics.sessions."session_start" BETWEEN r.range_start AND r.range_end '
        "AND analytics.sessions.batch_id < r.batch_id"
    )


def test_no_batch_brings_back_a_session_a_newer_correction_replaced() -> None:
    [merge] = sql.merge_sql(SESSIONS)
    guard = (
        "FROM stage_sessions AS s WHERE NOT EXISTS (SELECT 1 FROM analytics.replaced_ranges AS r "
        """WHERE r.table_name = 'sessions' AND r.group_key = s."user_key" """
        'AND s."session_start" BETWEEN r.range_start AND r.range_end '
        'AND r.batch_id > s.batch_id) ORDER BY "session_key", batch_id DESC'
    )
    assert guard in merge
    _, insert = sql.merge_sql(SESSIONS, Dialect.REDSHIFT)
    assert insert.endswith("AND r.batch_id > s.batch_id)")
    # Tables without a replace scope merge as before.
    assert "replaced_ranges" not in sql.merge_sql(EVENT_COUNTS_MINUTE)[0]


def test_the_sweep_lists_each_kind_of_marker_apart() -> None:
    stream_key = "processed/sessions/_commits/batch-000000000007.json"
    assert list_start("sessions", BatchKind.STREAM, stream_key) == stream_key
    written = datetime(2026, 11, 28, 10, 15, tzinfo=UTC)
    correction_key = "processed/sessions/_commits/" + BatchName.correction(9, written).label
    # Corrections are listed again from an hour before the watermark.
    assert list_start("sessions", BatchKind.CORRECTION, correction_key + ".json") == (
        "processed/sessions/_commits/correction-20261128T091500000000Z"
    )
    assert list_start("sessions", BatchKind.CORRECTION, "") == ""
    low, high = key_range("sessions", BatchKind.STREAM, "")
    assert low <= stream_key < high
    assert not low <= correction_key + ".json" < high
    low, high = key_range("sessions", BatchKind.CORRECTION, "")
    assert low <= correction_key + ".json" < high and not low <= stream_key < high


def test_replay_selects_quarantined_versions_and_releases_only_those() -> None:
    from warehouse_loader.replay import release_sql, select_quarantined_sql

    statement, params = select_quarantined_sql("sessions", 7, None)
    assert statement == (
        "SELECT object_key, etag, table_name, batch_id, reason, loaded_at "
        "FROM analytics.load_ledger WHERE status = 'quarantined' AND table_name = %s "
        "AND batch_id = %s ORDER BY table_name, object_key"
    )
    assert params == ["sessions", 7]
    assert select_quarantined_sql(None, None, None)[1] == []
    # A loaded version is never released: only the quarantined row of that version goes.
    assert release_sql() == (
        "DELETE FROM analytics.load_ledger WHERE object_key = %s AND etag = %s "
        "AND status = 'quarantined'"
    )
