"""Lake naming and the batch ordering rule (clickstream_common.lake)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clickstream_common.lake import (
    CORRECTION_BATCH_BASE,
    BatchKind,
    BatchName,
    batch_label_of,
    commit_marker_key,
    correction_batch_id,
    correction_written_at,
    error_object_key,
    is_correction,
    offsets_cover,
    parse_commit_marker_key,
    processed_object_key,
    stream_batch_of_object,
)

WRITTEN = datetime(2026, 11, 28, 10, 15, 30, 123456, tzinfo=UTC)


def test_stream_batches_keep_their_names() -> None:
    assert commit_marker_key("events", 42) == "processed/events/_commits/batch-000000000042.json"
    assert commit_marker_key("events", BatchName.stream(42)) == commit_marker_key("events", 42)
    assert processed_object_key("events", "2026-11-28", "10", 42) == (
        "processed/events/date=2026-11-28/hour=10/batch-000000000042.parquet"
    )
    assert parse_commit_marker_key(commit_marker_key("events", 42)) == ("events", 42)


def test_an_object_of_one_spark_partition_keeps_the_layout_and_names_its_batch() -> None:
    key = processed_object_key("events", "2026-11-28", "10", 42, part=3)
    assert key == "processed/events/date=2026-11-28/hour=10/batch-000000000042-part-00003.parquet"
    assert stream_batch_of_object(key) == 42
    assert parse_commit_marker_key(key) is None
    assert batch_label_of("batch-000000000042-part-00003") == "batch-000000000042"
    assert batch_label_of("batch-000000000042") == "batch-000000000042"
    errors = error_object_key("2026-11-28", "10", 42, part=1)
    assert errors == "errors/events/date=2026-11-28/hour=10/batch-000000000042-part-00001.jsonl.gz"
    assert error_object_key("2026-11-28", "10", 42).endswith("/batch-000000000042.jsonl.gz")


def test_a_correction_is_named_by_when_it_was_written_and_ranks_by_its_events_batch() -> None:
    name = BatchName.correction(77, WRITTEN)
    assert name.kind is BatchKind.CORRECTION and name.batch_id == CORRECTION_BATCH_BASE + 77
    key = commit_marker_key("sessions", name)
    assert key == "processed/sessions/_commits/correction-20261128T101530123456Z-000000000077.json"
    assert parse_commit_marker_key(key) == ("sessions", CORRECTION_BATCH_BASE + 77)
    assert correction_written_at(key) == WRITTEN
    assert correction_written_at(commit_marker_key("sessions", 3)) is None
    assert processed_object_key("sessions", "2026-11-28", "09", name).endswith(
        "/hour=09/correction-20261128T101530123456Z-000000000077.parquet"
    )
    # Later runs list after earlier ones.
    later = commit_marker_key("sessions", BatchName.correction(5, WRITTEN + timedelta(seconds=1)))
    assert later > key


def test_the_ordering_rule() -> None:
    newest_stream_batch = 10**12 - 1
    assert correction_batch_id(0) > newest_stream_batch
    assert correction_batch_id(8) > correction_batch_id(7)
    assert is_correction(correction_batch_id(0)) and not is_correction(newest_stream_batch)
    with pytest.raises(ValueError):
        correction_batch_id(10**12)
    with pytest.raises(ValueError):
        BatchName.stream(10**12)


def test_other_keys_are_not_markers() -> None:
    for key in (
        "processed/events/_commits/batch-42.json",
        "processed/events/_commits/correction-20261128T101530Z-000000000077.json",
        "processed/events/date=2026-11-28/hour=10/batch-000000000042.parquet",
        "corrections/state.json",
    ):
        assert parse_commit_marker_key(key) is None


def test_offsets_cover() -> None:
    lake = {"clickstream.events": {"0": 10, "1": 7}}
    assert offsets_cover(lake, {"clickstream.events": {"0": 10, "1": 3}})
    assert not offsets_cover(lake, {"clickstream.events": {"0": 11}})
    assert not offsets_cover(lake, {"clickstream.events": {"2": 1}})
    assert not offsets_cover(lake, {"other": {"0": 0}})
    assert offsets_cover(lake, {})
