import orjson

from clickstream_common.tables import EVENT_COUNTS_MINUTE, EVENTS, SESSIONS, Dialect
from warehouse_loader import sql
from warehouse_loader.notifications import (
    MALFORMED,
    NOT_A_MARKER,
    NOT_CREATED,
    OTHER_BUCKET,
    TEST_EVENT,
    markers_in,
    unique_notices,
)


def test_upsert_lets_only_a_newer_batch_win() -> None:
    [statement] = sql.merge_sql(EVENT_COUNTS_MINUTE)
    assert statement == (
        "INSERT INTO analytics.event_counts_minute "
        '("window_start", "window_end", "event_type", "events", "unique_users", "batch_id") '
        'SELECT DISTINCT ON ("window_start", "event_type") '
        '"window_start", "window_end", "event_type", "events", "unique_users", "batch_id" '
        "FROM stage_event_counts_minute "
        'ORDER BY "window_start", "event_type", batch_id DESC '
        'ON CONFLICT ("window_start", "event_type") DO UPDATE SET '
        '"window_end" = EXCLUDED."window_end", "events" = EXCLUDED."events", '
        '"unique_users" = EXCLUDED."unique_users", "batch_id" = EXCLUDED."batch_id" '
        "WHERE analytics.event_counts_minute.batch_id <= EXCLUDED.batch_id"
    )


def test_insert_only_keeps_the_oldest_batch_whatever_the_load_order() -> None:
    [statement] = sql.merge_sql(EVENTS)
    # An event_id is unique within its source: the key is (source, event_id).
    assert 'SELECT DISTINCT ON ("source", "event_id")' in statement
    assert (
        'ORDER BY "source", "event_id", batch_id ASC '
        'ON CONFLICT ("source", "event_id") DO UPDATE SET' in statement
    )
    assert statement.endswith("WHERE analytics.events.batch_id > EXCLUDED.batch_id")
    # Every column name is quoted (the reserved `timestamp` too), in the list and the update.
    assert ', "timestamp", ' in statement
    assert '"timestamp" = EXCLUDED."timestamp"' in statement


def test_copy_from_stdin_streams_csv_into_staging_or_the_target() -> None:
    assert sql.copy_from_stdin_sql(SESSIONS).startswith(
        'COPY stage_sessions ("session_key", "user_key", "session_start",'
    )
    assert sql.copy_from_stdin_sql(SESSIONS).endswith('"batch_id") FROM STDIN (FORMAT csv)')
    assert sql.copy_from_stdin_sql(EVENTS, "analytics.events").startswith(
        'COPY analytics.events ("event_id", "event_type", "timestamp", "user_id",'
    )
    assert sql.create_staging_sql(EVENTS, Dialect.POSTGRES) == (
        "CREATE TEMP TABLE stage_events (LIKE analytics.events) ON COMMIT DROP"
    )


def test_ledger_claim_sql_does_nothing_for_a_claimed_version() -> None:
    """The statements' text; tests/loader/test_exactly_once.py shows a replayed marker
    skipped as already loaded on PostgreSQL."""
    assert sql.claim_ledger_sql() == (
        "INSERT INTO analytics.load_ledger (object_key, etag, table_name, batch_id, "
        "rows_loaded, status, reason, marker_created_at) "
        "VALUES (%s, %s, %s, %s, 0, 'loaded', NULL, %s) "
        "ON CONFLICT (object_key, etag) DO NOTHING RETURNING 1"
    )
    assert sql.quarantine_sql().endswith(
        "'quarantined', %s, %s, clock_timestamp()) ON CONFLICT (object_key, etag) DO NOTHING"
    )


def test_migrations_are_versioned_and_create_everything() -> None:
    steps = sql.migrations(Dialect.POSTGRES)
    assert [v for v, _ in steps] == [1, 2, 3, 4, 5, 6]
    v1, v2, v3, _, v5, v6 = ("\n".join(s) for _, s in steps)
    # The views that sum the events' revenue follow the schema's revenue rule.
    for view in ("conversion_funnel_hourly", "stitched_users"):
        assert f"CREATE OR REPLACE VIEW analytics.{view} AS" in v6
    assert v6.count("COALESCE(revenue, price * COALESCE(quantity, 1), 0)") == 2
    # A table added after v1 reaches existing warehouses through its own step.
    assert "CREATE TABLE IF NOT EXISTS analytics.anomalies (" in v3
    assert "CREATE SCHEMA IF NOT EXISTS analytics" in v1
    for table in (
        "events",
        "event_counts_minute",
        "active_users_5m",
        "page_views_minute",
        "product_stats_minute",
        "sessions",
        "load_ledger",
    ):
        assert f"CREATE TABLE IF NOT EXISTS analytics.{table} (" in v1
    assert '    "timestamp" TIMESTAMPTZ NOT NULL,' in v1
    assert "ADD COLUMN IF NOT EXISTS status TEXT NOT NULL DEFAULT 'loaded'" in v2
    # PostgreSQL indexes matching Redshift's SORTKEY (event_time) and DISTKEY (user_key).
    assert "ON analytics.events (event_time)" in v2
    assert "ON analytics.events (user_key, event_time)" in v2
    for view in (
        "live_users",
        "trending_products",
        "conversion_funnel_hourly",
        "sessions_daily",
        "page_views_hourly",
        "quarantined_batches",
        "load_status",
    ):
        assert f"CREATE OR REPLACE VIEW analytics.{view} AS" in v2
    # v5: the per-source events key, the ranges corrections replace, load_status by kind.
    assert "DROP CONSTRAINT IF EXISTS events_pkey" in v5
    assert 'ADD CONSTRAINT events_pkey PRIMARY KEY ("source", "event_id")' in v5
    assert "CREATE TABLE IF NOT EXISTS analytics.replaced_ranges (" in v5
    assert "AS corrections_loaded" in v5
    # Every statement can run again (IF NOT EXISTS / OR REPLACE / a key dropped, then added).
    for _, statements in steps:
        for statement in statements:
            again = "IF NOT EXISTS" in statement or "OR REPLACE" in statement
            again = again or "IF EXISTS" in statement
            assert again or "ADD CONSTRAINT events_pkey" in statement, statement


def _record(
    key: str, event: str = "s3:ObjectCreated:Put", bucket: str = "lake"
) -> dict[str, object]:
    return {
        "eventName": event,
        "eventTime": "2026-11-27T12:00:00Z",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "eTag": '"abc"'}},
    }


MARKER = "processed/event_counts_minute/_commits/batch-000000000007.json"


def test_markers_are_found_keys_decoded_and_the_rest_counted() -> None:
    message = orjson.dumps(
        {
            "Records": [
                _record(MARKER.replace("/", "%2F")),
                _record(
                    "processed/event_counts_minute/date%3D2026-11-27/hour%3D12/batch-1.parquet"
                ),
                _record(MARKER, event="s3:ObjectRemoved:Delete"),
                _record(MARKER, bucket="someone-else"),
                {"eventName": "s3:ObjectCreated:Put"},
            ]
        }
    )
    found, skipped = markers_in(message, bucket="lake")
    assert [(n.key, n.dataset, n.batch_id, n.etag) for n in found] == [
        (MARKER, "event_counts_minute", 7, "abc")
    ]
    assert skipped == {NOT_A_MARKER: 1, NOT_CREATED: 1, OTHER_BUCKET: 1, MALFORMED: 1}


def test_test_events_garbage_and_sns_envelopes() -> None:
    test_event = b'{"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "lake"}'
    assert markers_in(test_event) == ([], {TEST_EVENT: 1})
    assert markers_in(b"not json") == ([], {MALFORMED: 1})
    assert markers_in(b'{"Records": "nope"}') == ([], {MALFORMED: 1})
    inner = orjson.dumps({"Records": [_record(MARKER.replace("/", "%2F"))]}).decode()
    envelope = orjson.dumps({"Type": "Notification", "Message": inner})
    found, skipped = markers_in(envelope)
    assert [n.key for n in found] == [MARKER] and not skipped


def test_repeated_notices_in_one_poll_load_once() -> None:
    message = orjson.dumps({"Records": [_record(MARKER), _record(MARKER)]})
    found, _ = markers_in(message)
    assert len(found) == 2 and len(unique_notices(found)) == 1
