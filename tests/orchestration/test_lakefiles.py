from __future__ import annotations

from datetime import UTC, datetime

from clickstream_common.lake import stream_batch_of_object
from orchestration.lakefiles import (
    RAW,
    ZONES,
    CompactedObject,
    CompactionManifest,
    LakeObject,
    batch_label,
    compacted_key,
    hour_prefix,
    is_compacted,
    is_data_object,
    live_objects,
    manifest_key,
    marker_key_of,
)

HOUR = datetime(2026, 11, 27, 9, tzinfo=UTC)
NOW = datetime(2026, 11, 28, 2, 30, tzinfo=UTC)
EVENTS = ZONES["events"]


def obj(key: str, size: int = 10) -> LakeObject:
    return LakeObject(key, size, NOW)


def test_compacted_stream_objects_keep_the_correction_pass_reading_them() -> None:
    """The correction pass keeps an events object when its stream batch is at most the
    newest it computes from; a compacted object carries the newest batch it holds."""
    key = compacted_key(EVENTS, HOUR, NOW, 0, newest_stream_batch=4711)
    assert key.startswith("processed/events/date=2026-11-27/hour=09/batch-000000004711-compacted-")
    assert stream_batch_of_object(key) == 4711
    other = compacted_key(EVENTS, HOUR, NOW, 1, newest_stream_batch=None)
    assert stream_batch_of_object(other) is None
    assert is_compacted(key) and is_compacted(other)
    assert batch_label(EVENTS, key) is None


def test_batch_labels_name_their_commit_markers() -> None:
    stream = hour_prefix(EVENTS, HOUR) + "batch-000000000042.parquet"
    correction = (
        hour_prefix(EVENTS, HOUR) + "correction-20261128T010203000000Z-000000000042.parquet"
    )
    assert batch_label(EVENTS, stream) == "batch-000000000042"
    assert marker_key_of(EVENTS, "batch-000000000042") == (
        "processed/events/_commits/batch-000000000042.json"
    )
    assert batch_label(EVENTS, correction) == "correction-20261128T010203000000Z-000000000042"
    # An object one Spark partition of the batch wrote (the stream processor's executors).
    part = hour_prefix(EVENTS, HOUR) + "batch-000000000042-part-00001.parquet"
    assert batch_label(EVENTS, part) == "batch-000000000042"
    assert (
        batch_label(RAW, "raw/events/date=2026-11-27/hour=09/batch_id=3/part-00000.json.gz") is None
    )


def test_hidden_files_and_the_manifest_are_not_data() -> None:
    assert not is_data_object(EVENTS, manifest_key(EVENTS, HOUR))
    assert not is_data_object(EVENTS, hour_prefix(EVENTS, HOUR) + "_SUCCESS")
    assert not is_data_object(EVENTS, hour_prefix(EVENTS, HOUR) + ".part.parquet")
    assert is_data_object(RAW, "raw/events/date=2026-11-27/hour=09/batch_id=3/part-00000.json.gz")


def test_live_objects_switch_at_the_manifest() -> None:
    prefix = hour_prefix(EVENTS, HOUR)
    old = [obj(prefix + f"batch-{i:012d}.parquet") for i in range(3)]
    new = obj(compacted_key(EVENTS, HOUR, NOW, 0, 2))
    later = obj(prefix + "batch-000000000009.parquet")
    # Before the switch: the new object is an orphan, nobody reads it.
    assert live_objects([*old, new], None) == old
    manifest = CompactionManifest(
        zone="events",
        hour=HOUR,
        compacted_at=NOW,
        live=[CompactedObject(key=new.key, bytes=30, rows=3)],
        replaced=[o.key for o in old],
    )
    # After it, even before the old objects are deleted: only the new one, and what came later.
    assert live_objects([*old, new, later], manifest) == [new, later]
    assert live_objects([new, later], manifest) == [new, later]
    # An orphan of a later run that stopped before its switch is not read either.
    orphan = obj(compacted_key(EVENTS, HOUR, NOW, 5, 9))
    assert live_objects([new, later, orphan], manifest) == [new, later]
    assert CompactionManifest.model_validate_json(manifest.model_dump_json()) == manifest
