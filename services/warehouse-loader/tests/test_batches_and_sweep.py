from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from clickstream_common.tables import ACTIVE_USERS_5M, SESSIONS
from warehouse_loader.batches import (
    PoisonBatch,
    check_footer,
    conform,
    conformed_batches,
    csv_chunks,
    footer_metadata,
    open_parquet,
)
from warehouse_loader.errors import is_unavailable
from warehouse_loader.reconcile import ListedMarker, advance, notice_for, unrecorded

START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def active_users(**overrides: object) -> pa.Table:
    columns: dict[str, object] = {
        "window_start": pa.array([START], pa.timestamp("us", tz="UTC")),
        "window_end": pa.array([START + timedelta(minutes=5)], pa.timestamp("us", tz="UTC")),
        "active_users": pa.array([3], pa.int64()),
        "batch_id": pa.array([9], pa.int64()),
    }
    columns.update(overrides)
    return pa.table(columns)


def test_conform_casts_compatible_types_and_orders_columns() -> None:
    table = active_users(
        # Spark may hand out int32 counts, ms timestamps in another zone, extra columns.
        active_users=pa.array([3], pa.int32()),
        window_end=pa.array(
            [datetime(2026, 11, 27, 14, 5, tzinfo=timezone(timedelta(hours=2)))],
            pa.timestamp("ms", tz="Europe/Berlin"),
        ),
        extra=pa.array(["ignored"]),
    )
    table = table.select(["batch_id", "extra", "active_users", "window_end", "window_start"])
    out = conform(table, ACTIVE_USERS_5M, expected_rows=1)
    assert out.column_names == list(ACTIVE_USERS_5M.column_names)
    assert out.schema.field("active_users").type == pa.int64()
    assert out["window_end"].to_pylist() == [START + timedelta(minutes=5)]


@pytest.mark.parametrize(
    ("table", "reason"),
    [
        (active_users().drop_columns(["active_users"]), "missing column 'active_users'"),
        (active_users(active_users=pa.array(["3"])), "column 'active_users' has type string"),
        (active_users(batch_id=pa.array([None], pa.int64())), "column 'batch_id' has 1 nulls"),
        (active_users(active_users=pa.array([2**40], pa.uint64())), "has type uint64"),
    ],
)
def test_wrong_schemas_are_poison(table: pa.Table, reason: str) -> None:
    with pytest.raises(PoisonBatch, match=reason):
        conform(table, ACTIVE_USERS_5M)


def test_row_count_must_match_the_marker() -> None:
    with pytest.raises(PoisonBatch, match="1 rows, the commit marker says 2"):
        conform(active_users(), ACTIVE_USERS_5M, expected_rows=2)
    parquet = open_parquet(_parquet(active_users()))
    with pytest.raises(PoisonBatch, match="1 rows, the commit marker says 2"):
        next(conformed_batches(parquet, ACTIVE_USERS_5M, expected_rows=2))


def test_objects_stream_in_conformed_slices() -> None:
    table = pa.concat_tables([active_users()] * 5)
    slices = list(conformed_batches(open_parquet(_parquet(table)), ACTIVE_USERS_5M, 5, 2))
    assert [s.num_rows for s in slices] == [2, 2, 1]
    assert all(s.column_names == list(ACTIVE_USERS_5M.column_names) for s in slices)


def test_unreadable_bytes_are_poison() -> None:
    with pytest.raises(PoisonBatch, match="unreadable Parquet"):
        open_parquet(b"this is not parquet at all")
    with pytest.raises(PoisonBatch, match="no PAR1 footer"):
        footer_metadata(b"garbage")


def test_csv_is_what_postgres_copy_expects() -> None:
    table = pa.table(
        {
            "text": ['say "hi", bye\nnow', "", None],
            "at": pa.array([START, START, None], pa.timestamp("us", tz="UTC")),
            "n": pa.array([1, None, 3], pa.int64()),
            "x": [0.1 + 0.2, None, 1e20],
            "b": [True, False, None],
        }
    )
    text = b"".join(csv_chunks(table)).decode()
    assert text == (
        '"say ""hi"", bye\nnow",2026-11-27 12:00:00.000000,1,0.30000000000000004,true\n'
        '"",2026-11-27 12:00:00.000000,,,false\n'
        ",,3,1e+20,\n"
    )


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def test_footer_checks_need_exact_columns_rows_and_no_nulls() -> None:
    good = footer_metadata(_parquet(active_users())[-4096:])
    check_footer(good, ACTIVE_USERS_5M, expected_rows=1)
    with pytest.raises(PoisonBatch, match="commit marker says 5"):
        check_footer(good, ACTIVE_USERS_5M, expected_rows=5)
    reordered = footer_metadata(_parquet(active_users().select([3, 2, 1, 0])))
    with pytest.raises(PoisonBatch, match="differ from the active_users_5m table"):
        check_footer(reordered, ACTIVE_USERS_5M)
    nulls = footer_metadata(_parquet(active_users(active_users=pa.array([None], pa.int64()))))
    with pytest.raises(PoisonBatch, match="'active_users' has nulls"):
        check_footer(nulls, ACTIVE_USERS_5M)


def m(batch: int, etag: str = "e") -> ListedMarker:
    return ListedMarker(f"processed/sessions/_commits/batch-{batch:012d}.json", etag)


def test_sweep_loads_what_the_ledger_lacks_and_advances_past_done_markers() -> None:
    listed = [m(1), m(2), m(3, "new"), m(4)]
    recorded = {(m(1).key, "e"), (m(2).key, "e"), (m(3).key, "old"), (m(4).key, "e")}
    # A rewritten marker (new ETag) is a new version to load.
    assert unrecorded(listed, recorded) == [m(3, "new")]
    assert advance("", listed, recorded) == m(2).key
    recorded.add((m(3).key, "new"))
    assert advance(m(2).key, listed[2:], recorded) == m(4).key
    assert advance(m(4).key, [], recorded) == m(4).key
    notice = notice_for("lake", m(7))
    assert (notice.dataset, notice.batch_id, notice.etag) == (SESSIONS.name, 7, "e")


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )


def test_unavailable_means_wait_not_quarantine() -> None:
    assert is_unavailable(psycopg.OperationalError("connection refused"))
    assert is_unavailable(psycopg.errors.DeadlockDetected("deadlock"))
    assert is_unavailable(EndpointConnectionError(endpoint_url="http://s3"))
    assert is_unavailable(_client_error("SlowDown", 503))
    assert is_unavailable(_client_error("AccessDenied", 403))
    assert not is_unavailable(_client_error("NoSuchKey", 404))
    assert not is_unavailable(psycopg.errors.UndefinedColumn("no such column"))
    assert not is_unavailable(ValueError("bug"))


def test_an_object_older_than_a_nullable_column_reads_it_as_null() -> None:
    # Sessions written before entry_page and exit_page existed (say): they load with NULLs,
    # on the PostgreSQL path; a NOT NULL column can never be missing.
    row = {
        "session_key": "k",
        "user_key": "u",
        "session_start": START,
        "session_end": START,
        "duration_seconds": 0.0,
        "events": 1,
        "page_views": 1,
        "products_viewed": 0,
        "converted": False,
        "revenue": 0.0,
        "batch_id": 3,
    }
    old = pa.Table.from_pylist([row])
    [out] = conformed_batches(open_parquet(_parquet(old)), SESSIONS, 1)
    assert out.column_names == list(SESSIONS.column_names)
    assert out["entry_page"].to_pylist() == [None] and out["exit_page"].type == pa.string()
    with pytest.raises(PoisonBatch, match="missing column 'user_key'"):
        conform(old.drop_columns(["user_key"]), SESSIONS)
    # Redshift's COPY matches columns by position: there the object must have them all.
    with pytest.raises(PoisonBatch, match="differ from the sessions table"):
        check_footer(open_parquet(_parquet(old)).metadata, SESSIONS, 1)
