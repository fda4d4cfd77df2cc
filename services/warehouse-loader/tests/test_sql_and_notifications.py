import orjson

from clickstream_common.tables import EVENT_COUNTS_MINUTE, Dialect
from warehouse_loader import sql
from warehouse_loader.notifications import markers_in


def test_upsert_lets_only_a_newer_batch_win() -> None:
    statement = sql.merge_sql(EVENT_COUNTS_MINUTE)
    assert statement.startswith("INSERT INTO analytics.event_counts_minute (window_start")
    assert "ON CONFLICT (window_start, event_type) DO UPDATE SET" in statement
    assert "events = EXCLUDED.events" in statement
    assert "window_start = EXCLUDED" not in statement
    assert statement.endswith("WHERE analytics.event_counts_minute.batch_id <= EXCLUDED.batch_id")


def test_migrations_create_schema_tables_and_ledger() -> None:
    [(version, statements)] = sql.migrations(Dialect.POSTGRES)
    assert version == 1
    text = "\n".join(statements)
    assert "CREATE SCHEMA IF NOT EXISTS analytics" in text
    assert "analytics.event_counts_minute" in text
    assert "analytics.load_ledger" in text


def _record(key: str, event: str = "s3:ObjectCreated:Put") -> dict[str, object]:
    return {
        "eventName": event,
        "eventTime": "2026-11-27T12:00:00Z",
        "s3": {"bucket": {"name": "lake"}, "object": {"key": key, "eTag": "abc"}},
    }


def test_markers_are_found_and_keys_decoded() -> None:
    key = "processed/event_counts_minute/_commits/batch-000000000007.json"
    message = orjson.dumps(
        {
            "Records": [
                _record(key.replace("/", "%2F")),
                _record(
                    "processed/event_counts_minute/date%3D2026-11-27/hour%3D12/batch-1.parquet"
                ),
                _record(key, event="s3:ObjectRemoved:Delete"),
            ]
        }
    )
    found, skipped = markers_in(message)
    assert [(n.key, n.dataset, n.batch_id, n.etag) for n in found] == [
        (key, "event_counts_minute", 7, "abc")
    ]
    assert skipped == 2


def test_test_events_and_garbage_are_skipped() -> None:
    assert markers_in(b'{"Event": "s3:TestEvent"}') == ([], 1)
    assert markers_in(b"not json") == ([], 1)
