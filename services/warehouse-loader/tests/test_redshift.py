"""Redshift dialect: statements checked against expected text and parsed by sqlglot's
Redshift grammar; the load path's statement sequence checked on a recording connection."""

from __future__ import annotations

import io
import json
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from clickstream_common.lake import (
    CORRECTION_BATCH_BASE,
    CommitMarker,
    CommittedObject,
    commit_marker_key,
)
from clickstream_common.tables import (
    ACTIVE_USERS_5M,
    EVENTS,
    SESSIONS,
    TABLES,
    Dialect,
    create_table_sql,
)
from warehouse_loader import sql
from warehouse_loader.batches import ARROW_TYPES
from warehouse_loader.loader import ALREADY_LOADED, LOADED, QUARANTINED, BatchLoader
from warehouse_loader.notifications import MarkerNotice

ROLE = "arn:aws:iam::123456789012:role/clickstream-loader"


def parse(statement: str) -> exp.Expression:
    # Placeholders become literals; ErrorLevel.RAISE fails on anything the grammar rejects.
    text = statement.replace("%s", "NULL")
    parsed = sqlglot.parse_one(text, read="redshift", error_level=sqlglot.ErrorLevel.RAISE)
    assert parsed is not None
    return parsed


def all_redshift_statements() -> list[str]:
    statements = [s for _, step in sql.migrations(Dialect.REDSHIFT) for s in step]
    for spec in TABLES.values():
        statements += [
            sql.create_staging_sql(spec, Dialect.REDSHIFT),
            sql.drop_staging_sql(spec),
            sql.copy_from_s3_sql(spec, "s3://lake/m.json", ROLE, manifest=True),
            sql.copy_from_s3_sql(spec, "s3://lake/a.parquet", ROLE, manifest=False),
            *sql.merge_sql(spec, Dialect.REDSHIFT),
            *sql.correction_statements(spec, Dialect.REDSHIFT, CORRECTION_BATCH_BASE + 7),
        ]
    return [
        *statements,
        sql.insert_ledger_sql(),
        sql.ledger_status_sql(),
        sql.finish_ledger_sql(Dialect.REDSHIFT),
        sql.quarantine_sql(Dialect.REDSHIFT),
        sql.recorded_markers_sql(),
        sql.create_migrations_table_sql(),
        sql.record_migration_sql(Dialect.REDSHIFT),
        sql.existing_columns_sql(),
        # Every nullable column missing, and one table missing altogether.
        *sql.evolve_schema_sql(
            {
                t.name: {c.name for c in t.columns if not c.nullable}
                for t in TABLES.values()
                if t is not SESSIONS
            },
            Dialect.REDSHIFT,
        ),
    ]


def test_every_redshift_statement_parses_as_what_it_is() -> None:
    kinds = {type(parse(s)).__name__ for s in all_redshift_statements()}
    # No statement fell back to an opaque command.
    assert kinds <= {"Create", "Copy", "Insert", "Delete", "Drop", "Update", "Select", "Alter"}
    assert {"Create", "Copy", "Insert", "Delete"} <= kinds


def test_lock_is_the_one_statement_sqlglot_only_knows_as_a_command() -> None:
    # LOCK is Redshift syntax sqlglot has no node for; it is still accepted.
    assert isinstance(parse(sql.lock_ledger_sql()), exp.Command)
    assert sql.lock_ledger_sql() == "LOCK analytics.load_ledger"


def test_no_leader_node_only_functions_next_to_table_data() -> None:
    for statement in all_redshift_statements():
        assert "now()" not in statement.lower() and "clock_timestamp" not in statement


def test_redshift_ddl_distribution_and_sort_keys() -> None:
    events = create_table_sql(EVENTS, Dialect.REDSHIFT)
    assert events.endswith('DISTKEY ("user_key")\nSORTKEY ("event_time")')
    assert '    "timestamp" TIMESTAMPTZ NOT NULL,' in events
    assert '    "properties" SUPER,' in events
    assert create_table_sql(ACTIVE_USERS_5M, Dialect.REDSHIFT).endswith(
        'DISTSTYLE ALL\nSORTKEY ("window_start")'
    )
    assert create_table_sql(SESSIONS, Dialect.REDSHIFT).endswith(
        'DISTKEY ("user_key")\nSORTKEY ("session_start")'
    )
    # The quoted name is the column sqlglot sees, not a keyword.
    columns = [c.name for c in parse(events).find_all(exp.ColumnDef)]
    assert "timestamp" in columns


def test_copy_from_s3_text() -> None:
    assert sql.copy_from_s3_sql(SESSIONS, "s3://lake/manifests/x.json", ROLE, manifest=True) == (
        "COPY stage_sessions FROM 's3://lake/manifests/x.json' "
        "IAM_ROLE 'arn:aws:iam::123456789012:role/clickstream-loader' FORMAT AS PARQUET MANIFEST"
    )
    assert sql.copy_from_s3_sql(SESSIONS, "s3://lake/it's.parquet", ROLE, manifest=False) == (
        "COPY stage_sessions FROM 's3://lake/it''s.parquet' "
        "IAM_ROLE 'arn:aws:iam::123456789012:role/clickstream-loader' FORMAT AS PARQUET"
    )
    copy = parse(sql.copy_from_s3_sql(SESSIONS, "s3://lake/m.json", ROLE, manifest=True))
    assert isinstance(copy, exp.Copy)


def test_staging_matches_the_parquet_columns_with_json_as_text() -> None:
    staging = sql.create_staging_sql(EVENTS, Dialect.REDSHIFT)
    assert staging.startswith('CREATE TEMP TABLE stage_events (\n    "event_id" VARCHAR(65535),')
    assert '    "properties" VARCHAR(65535),' in staging
    assert '    "timestamp" TIMESTAMPTZ,' in staging
    assert "NOT NULL" not in staging and "PRIMARY KEY" not in staging


def test_redshift_upsert_deletes_older_rows_then_inserts_the_newest() -> None:
    delete, insert = sql.merge_sql(ACTIVE_USERS_5M, Dialect.REDSHIFT)
    assert delete == (
        "DELETE FROM analytics.active_users_5m USING stage_active_users_5m AS s "
        'WHERE analytics.active_users_5m."window_start" = s."window_start" '
        "AND analytics.active_users_5m.batch_id <= s.batch_id"
    )
    assert insert == (
        "INSERT INTO analytics.active_users_5m "
        '("window_start", "window_end", "active_users", "batch_id") '
        'SELECT s."window_start", s."window_end", s."active_users", s."batch_id" FROM ('
        'SELECT "window_start", "window_end", "active_users", "batch_id", '
        'ROW_NUMBER() OVER (PARTITION BY "window_start" ORDER BY batch_id DESC) AS loader_rank '
        "FROM stage_active_users_5m) AS s "
        'LEFT JOIN analytics.active_users_5m AS cur ON cur."window_start" = s."window_start" '
        'WHERE s.loader_rank = 1 AND cur."window_start" IS NULL'
    )
    assert isinstance(parse(delete), exp.Delete) and isinstance(parse(insert), exp.Insert)


def test_redshift_insert_only_keeps_the_oldest_and_parses_json() -> None:
    delete, insert = sql.merge_sql(EVENTS, Dialect.REDSHIFT)
    assert delete.endswith("AND analytics.events.batch_id > s.batch_id")
    assert 'PARTITION BY "source", "event_id" ORDER BY batch_id ASC' in insert
    assert 'ON cur."source" = s."source" AND cur."event_id" = s."event_id"' in insert
    assert 'JSON_PARSE(s."properties")' in insert
    assert 's."timestamp"' in insert


def test_manifest_names_each_object_with_its_length() -> None:
    body = json.loads(sql.manifest_json("lake", [("processed/a.parquet", 10), ("b", 20)]))
    assert body == {
        "entries": [
            {
                "url": "s3://lake/processed/a.parquet",
                "mandatory": True,
                "meta": {"content_length": 10},
            },
            {"url": "s3://lake/b", "mandatory": True, "meta": {"content_length": 20}},
        ]
    }


# --- the load path on a recording connection (Redshift is not available here) ---------


class FakeS3:
    """In-memory objects with the parts of get_object the Redshift path uses (Range)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_: Any) -> None:
        self.objects[Key] = Body

    def get_object(self, Bucket: str, Key: str, Range: str | None = None) -> dict[str, Any]:
        data = self.objects[Key]
        size = len(data)
        if Range:
            data = data[-int(Range.removeprefix("bytes=-")) :]
        return {
            "Body": io.BytesIO(data),
            "ETag": f'"etag-{len(self.objects[Key])}"',
            "ContentLength": len(data),
            "ContentRange": f"bytes {size - len(data)}-{size - 1}/{size}",
        }


class Recorder:
    def __init__(self, ledger_has: bool = False) -> None:
        self.statements: list[str] = []
        self.ledger_has = ledger_has

    def execute(self, statement: str, params: Any = None) -> Recorder:
        self.statements.append(statement)
        self._last = statement
        return self

    def fetchone(self) -> tuple[int] | None:
        if self._last == sql.ledger_status_sql() and self.ledger_has:
            return (1,)
        return None

    @contextmanager
    def transaction(self) -> Any:
        self.statements.append("BEGIN")
        yield
        self.statements.append("COMMIT")


def _parquet(spec: Any, rows: int, drop: str | None = None) -> bytes:
    columns = {
        c.name: pa.array([None] * rows, ARROW_TYPES[c.type]) if c.nullable else None
        for c in spec.columns
    }
    for c in spec.columns:
        if not c.nullable:
            value: Any = {
                "string": "x",
                "long": 1,
                "double": 1.0,
                "boolean": True,
                "timestamp": datetime(2026, 1, 1, tzinfo=UTC),
            }[c.type.value]
            columns[c.name] = pa.array([value] * rows, ARROW_TYPES[c.type])
    if drop:
        del columns[drop]
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def _batch(s3: FakeS3, spec: Any, files: int, drop: str | None = None) -> MarkerNotice:
    objects = []
    for i in range(files):
        key = f"processed/{spec.name}/date=2026-01-01/hour={i:02d}/batch-000000000003.parquet"
        s3.put_object("lake", key, _parquet(spec, 5, drop))
        objects.append(CommittedObject(key=key, rows=5))
    marker = CommitMarker(
        dataset=spec.name, batch_id=3, objects=objects, committed_at=datetime.now(UTC)
    )
    key = commit_marker_key(spec.name, 3)
    s3.put_object("lake", key, marker.model_dump_json().encode())
    return MarkerNotice("lake", key, "", spec.name, 3)


def test_redshift_load_copies_via_a_manifest_and_merges_in_one_transaction() -> None:
    s3, conn = FakeS3(), Recorder()
    loader = BatchLoader(conn, s3, Dialect.REDSHIFT, iam_role=ROLE)  # type: ignore[arg-type]
    result = loader.load(_batch(s3, SESSIONS, files=2))
    assert (result.status, result.rows) == (LOADED, 10)
    manifest_key = next(k for k in s3.objects if k.startswith("loader/manifests/sessions/"))
    manifest = json.loads(s3.objects[manifest_key])
    assert [e["url"].rsplit("/", 2)[-2] for e in manifest["entries"]] == ["hour=00", "hour=01"]
    assert all(e["meta"]["content_length"] > 0 for e in manifest["entries"])
    body = conn.statements[conn.statements.index("BEGIN") :]
    assert body == [
        "BEGIN",
        "LOCK analytics.load_ledger",
        sql.ledger_status_sql(),
        sql.insert_ledger_sql(),
        sql.drop_staging_sql(SESSIONS),
        sql.create_staging_sql(SESSIONS, Dialect.REDSHIFT),
        sql.copy_from_s3_sql(SESSIONS, f"s3://lake/{manifest_key}", ROLE, manifest=True),
        *sql.merge_sql(SESSIONS, Dialect.REDSHIFT),
        sql.drop_staging_sql(SESSIONS),
        sql.finish_ledger_sql(Dialect.REDSHIFT),
        "COMMIT",
    ]


def test_redshift_single_file_needs_no_manifest_and_replays_load_nothing() -> None:
    s3 = FakeS3()
    notice = _batch(s3, ACTIVE_USERS_5M, files=1)
    conn = Recorder()
    BatchLoader(conn, s3, Dialect.REDSHIFT, iam_role=ROLE).load(notice)  # type: ignore[arg-type]
    copies = [s for s in conn.statements if s.startswith("COPY")]
    assert copies == [
        sql.copy_from_s3_sql(
            ACTIVE_USERS_5M,
            "s3://lake/processed/active_users_5m/date=2026-01-01/hour=00/"
            "batch-000000000003.parquet",
            ROLE,
            manifest=False,
        )
    ]
    replay = Recorder(ledger_has=True)
    result = BatchLoader(replay, s3, Dialect.REDSHIFT, iam_role=ROLE).load(notice)  # type: ignore[arg-type]
    assert result.status == ALREADY_LOADED
    assert not any(s.startswith(("COPY", "INSERT", "DELETE")) for s in replay.statements)


def test_redshift_wrong_schema_is_quarantined_from_the_footer_alone() -> None:
    s3, conn = FakeS3(), Recorder()
    notice = _batch(s3, SESSIONS, files=1, drop="converted")
    result = BatchLoader(conn, s3, Dialect.REDSHIFT, iam_role=ROLE).load(notice)  # type: ignore[arg-type]
    assert result.status == QUARANTINED
    assert result.reason is not None and "converted" in result.reason
    assert not any(s.startswith("COPY") for s in conn.statements)
    assert any(s.startswith("INSERT INTO analytics.load_ledger") for s in conn.statements)


def test_redshift_needs_an_iam_role() -> None:
    with pytest.raises(ValueError, match="LOADER_REDSHIFT_IAM_ROLE"):
        BatchLoader(Recorder(), FakeS3(), Dialect.REDSHIFT)  # type: ignore[arg-type]
