"""CRM export records -> identify events (static data)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import pytest

from clickstream_simulator.crm_import import (
    build_events,
    event_id_for,
    export_format,
    read_text,
    records,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CSV = """user_id,email,plan,zip,updated_at
u-1,a@example.com,pro,01234,2026-11-27T10:00:00Z
u-2,b@example.com,,,
,nobody@example.com,free,,
"""


def test_csv_rows_become_identify_events_with_string_traits() -> None:
    result = build_events(records(CSV, "csv"), "user_id", "updated_at", NOW, 16384)
    assert result.refused == [(3, "no user id in field 'user_id'")]
    first, second = result.events
    assert first == {
        "event_id": event_id_for("u-1", {"email": "a@example.com", "plan": "pro", "zip": "01234"}),
        "event_type": "identify",
        "timestamp": "2026-11-27T10:00:00Z",
        "user_id": "u-1",
        "properties": {"traits": {"email": "a@example.com", "plan": "pro", "zip": "01234"}},
        "raw_context": {"library": {"name": "clickstream-crm-import"}},
    }
    # Empty cells set no trait; without updated_at the traits are true as of the import.
    assert second["properties"] == {"traits": {"email": "b@example.com"}}
    assert second["timestamp"] == NOW.isoformat()


def test_json_lines_keep_their_types_and_name_bad_lines() -> None:
    text = (
        '{"id": 7, "ltv": 120.5, "vip": true}\n\n[1, 2]\n{broken\n'
        '{"id": "x", "updated_at": "soon"}\n'
    )
    result = build_events(records(text, "jsonl"), "id", "updated_at", NOW, 16384)
    assert [e["user_id"] for e in result.events] == ["7"]
    assert result.events[0]["properties"]["traits"] == {"ltv": 120.5, "vip": True}
    assert [n for n, _ in result.refused] == [3, 4, 5]
    assert result.refused[0][1] == "record is not a JSON object"
    assert result.refused[1][1].startswith("not JSON")
    assert "timestamp" in result.refused[2][1]


def test_the_same_record_imported_again_has_the_same_id_and_a_change_a_new_one() -> None:
    once = build_events(records(CSV, "csv"), "user_id", "updated_at", NOW, 16384)
    again = build_events(records(CSV, "csv"), "user_id", "updated_at", NOW.replace(hour=13), 16384)
    assert [e["event_id"] for e in once.events] == [e["event_id"] for e in again.events]
    changed = build_events(
        records(CSV.replace("pro", "enterprise"), "csv"), "user_id", "updated_at", NOW, 16384
    )
    assert changed.events[0]["event_id"] != once.events[0]["event_id"]
    assert changed.events[1]["event_id"] == once.events[1]["event_id"]


def test_traits_over_the_collectors_limit_are_not_sent() -> None:
    text = '{"user_id": "u", "notes": "' + "x" * 100 + '"}\n'
    result = build_events(records(text, "jsonl"), "user_id", "updated_at", NOW, 64)
    assert result.events == []
    assert "over the limit of 64" in result.refused[0][1]


def test_files_gzip_and_formats(tmp_path: Path) -> None:
    path = tmp_path / "customers.csv.gz"
    path.write_bytes(gzip.compress(CSV.encode("utf-8-sig")))
    assert read_text(str(path)) == CSV
    assert export_format(str(path), None) == "csv"
    assert export_format("s3://b/k.jsonl", None) == "jsonl"
    assert export_format("x.txt", "jsonl") == "jsonl"
    with pytest.raises(ValueError, match="--format"):
        export_format("x.txt", None)
