from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from clickstream_common.arrow import arrow_schema
from clickstream_common.tables import EVENT_COUNTS_MINUTE
from orchestration.compaction import (
    chunks,
    conform,
    group_of,
    hours_of,
    plan_hour,
    processed_eligibility,
    stream_batch_of,
)
from orchestration.lakefiles import RAW, ZONES, LakeObject, compacted_key, hour_prefix
from orchestration.settings import Settings

HOUR = datetime(2026, 11, 27, 9, tzinfo=UTC)
NOW = datetime(2026, 11, 28, 2, 30, tzinfo=UTC)
EVENTS = ZONES["events"]
COUNTS = ZONES["event_counts_minute"]
SETTINGS = Settings(compaction_small_object_bytes=1000, compaction_target_object_bytes=250)


def stream(zone, batch: int, size: int = 100, age: timedelta = timedelta(hours=5)) -> LakeObject:
    return LakeObject(hour_prefix(zone, HOUR) + f"batch-{batch:012d}.parquet", size, NOW - age)


def correction(zone, stamp: str, size: int = 100) -> LakeObject:
    key = hour_prefix(zone, HOUR) + f"correction-{stamp}-000000000005.parquet"
    return LakeObject(key, size, NOW - timedelta(hours=5))


def test_chunks_aim_at_the_target_size() -> None:
    objects = [stream(EVENTS, i) for i in range(7)]
    assert [len(c) for c in chunks(objects, 250)] == [2, 2, 2, 1]
    assert [len(c) for c in chunks(objects, 10_000)] == [7]
    # An object bigger than the target still goes alone, never dropped.
    assert [len(c) for c in chunks([stream(EVENTS, 1, 900)], 250)] == [1]


def test_stream_batches_and_corrections_are_compacted_apart() -> None:
    live = [
        stream(COUNTS, 1),
        stream(COUNTS, 2),
        correction(COUNTS, "20261127T100000000000Z"),
        correction(COUNTS, "20261127T110000000000Z"),
    ]
    plan = plan_hour(COUNTS, live, lambda o: None, SETTINGS)
    groups = [[o.key for chunk in g for o in chunk] for g in plan.groups]
    assert sorted(group_of(COUNTS, o) for o in live) == [
        "corrections",
        "corrections",
        "stream",
        "stream",
    ]
    assert len(groups) == 2
    assert all(
        all("/correction-" in k for k in g) or all("/batch-" in k for k in g) for g in groups
    )


def test_what_may_not_be_rewritten_stays() -> None:
    live = [
        stream(EVENTS, 1),
        stream(EVENTS, 2),
        stream(EVENTS, 3),
        stream(EVENTS, 4, age=timedelta(minutes=5)),
        stream(EVENTS, 5, size=5000),
        stream(EVENTS, 6),
        stream(EVENTS, 7),
    ]
    statuses = {
        "processed/events/_commits/batch-000000000001.json": "loaded",
        "processed/events/_commits/batch-000000000002.json": "loaded",
        "processed/events/_commits/batch-000000000003.json": "quarantined",
        "processed/events/_commits/batch-000000000004.json": "loaded",
        "processed/events/_commits/batch-000000000005.json": "loaded",
        "processed/events/_commits/batch-000000000006.json": "loaded",
    }
    eligible = processed_eligibility(EVENTS, live, statuses, 2, SETTINGS, NOW)
    plan = plan_hour(EVENTS, live, eligible, SETTINGS)
    assert [o.key for o in plan.inputs] == [live[0].key, live[1].key]
    assert plan.skipped == {
        "quarantined": 1,
        "too young": 1,
        "large enough": 1,
        "not yet examined by the correction pass": 1,
        "not loaded": 1,
    }
    # Without a correction pass to wait for, batch 6 may go too.
    relaxed = Settings(**SETTINGS.model_dump() | {"compaction_wait_for_correction": False})
    eligible = processed_eligibility(EVENTS, live, statuses, None, relaxed, NOW)
    assert len(plan_hour(EVENTS, live, eligible, relaxed).inputs) == 3


def test_a_lone_object_is_left_as_it_is() -> None:
    plan = plan_hour(EVENTS, [stream(EVENTS, 1)], lambda o: None, SETTINGS)
    assert plan.groups == [] and plan.skipped == {"alone": 1}


def test_small_compacted_objects_are_merged_again_with_late_batches() -> None:
    earlier = LakeObject(compacted_key(EVENTS, HOUR, NOW - timedelta(days=1), 0, 3), 120, NOW)
    late = stream(EVENTS, 40)
    plan = plan_hour(EVENTS, [earlier, late], lambda o: "not loaded", SETTINGS)
    assert plan.inputs == []  # the late batch waits for the loader
    plan = plan_hour(EVENTS, [earlier, late], lambda o: None, SETTINGS)
    assert plan.inputs == [earlier, late]
    assert max(stream_batch_of(EVENTS, o) or -1 for o in plan.inputs) == 40
    assert stream_batch_of(EVENTS, earlier) == 3


def test_raw_objects_only_wait_for_their_age() -> None:
    key = "raw/events/date=2026-11-27/hour=09/batch_id={}/part-00000.json.gz"
    live = [LakeObject(key.format(i), 50, NOW - timedelta(hours=3)) for i in range(4)]
    plan = plan_hour(RAW, live, lambda o: None, SETTINGS)
    assert [len(c) for g in plan.groups for c in g] == [4]
    assert stream_batch_of(RAW, live[0]) is None


def test_conform_fills_columns_an_object_predates_and_refuses_unknown_ones() -> None:
    schema = arrow_schema(EVENT_COUNTS_MINUTE)
    old = pa.table(
        {
            "window_start": pa.array([HOUR], pa.timestamp("us", tz="UTC")),
            "window_end": pa.array([HOUR + timedelta(minutes=1)], pa.timestamp("us", tz="UTC")),
            "event_type": ["page_view"],
            "events": pa.array([3], pa.int32()),
            "batch_id": pa.array([7], pa.int64()),
        }
    )
    out = conform(old, schema)
    assert out.schema == schema
    assert out["unique_users"].to_pylist() == [None]
    assert out["events"].to_pylist() == [3]
    with pytest.raises(ValueError, match="not in the data set's spec"):
        conform(old.append_column("surprise", pa.array([1])), schema)


def test_hours_of_a_day_and_its_lookback_that_have_begun() -> None:
    hours = hours_of(date(2026, 11, 27), 2, NOW)
    assert hours[0] == datetime(2026, 11, 26, tzinfo=UTC) and len(hours) == 48
    today = hours_of(date(2026, 11, 28), 1, NOW)
    assert today[-1] == datetime(2026, 11, 28, 2, tzinfo=UTC) and len(today) == 3
