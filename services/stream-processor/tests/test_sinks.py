"""The driver-side lake writing: deterministic names, markers last, errors and raw lines."""

import gzip
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from clickstream_common.lake import CommitMarker, commit_marker_key
from clickstream_common.tables import EVENT_COUNTS_MINUTE
from stream_processor import metrics
from stream_processor.sinks import LakeWriter, first_per_key, partitions_of, table_for


class RecordingS3:
    """Keeps put objects in order (a fake for the S3 client's put_object only)."""

    def __init__(self) -> None:
        self.puts: list[tuple[str, bytes]] = []

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_: Any) -> None:
        self.puts.append((Key, Body))


def ts(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 27, hour, minute, tzinfo=UTC)


def test_first_per_key_keeps_the_first_row_in_table_order() -> None:
    table = pa.table({"event_id": ["a", "b", "a", "c", "b"], "n": [1, 2, 3, 4, 5]})
    assert first_per_key(table, "event_id").to_pydict() == {
        "event_id": ["a", "b", "c"],
        "n": [1, 2, 4],
    }
    unique = pa.table({"event_id": ["x", "y"]})
    assert first_per_key(unique, "event_id") is unique


def test_first_per_key_on_source_and_event_id_keeps_each_sources_event() -> None:
    # An event_id is unique within its source: two sources may send the same id in one batch.
    table = pa.table(
        {
            "source": ["web", "app", "web", "app"],
            "event_id": ["a", "a", "a", "b"],
            "n": [1, 2, 3, 4],
        }
    )
    assert first_per_key(table, ("source", "event_id")).to_pydict() == {
        "source": ["web", "app", "app"],
        "event_id": ["a", "a", "b"],
        "n": [1, 2, 4],
    }
    distinct = table.slice(0, 2)
    assert first_per_key(distinct, ("source", "event_id")) is distinct


def test_objects_per_hour_then_the_marker_last() -> None:
    rows = pa.table(
        {
            "window_start": pa.array(
                [ts(12, 59), ts(13, 0), ts(12, 58)], pa.timestamp("us", "UTC")
            ),
            "window_end": pa.array([ts(13), ts(13, 1), ts(12, 59)], pa.timestamp("us", "UTC")),
            "event_type": ["click", "click", "page_view"],
            "events": [1, 2, 3],
            "unique_users": [1, 1, 2],
        }
    )
    s3 = RecordingS3()
    table = table_for(EVENT_COUNTS_MINUTE, rows, 42)
    assert tuple(table.column_names) == EVENT_COUNTS_MINUTE.column_names
    marker = LakeWriter(s3, "bucket").write_table(
        EVENT_COUNTS_MINUTE.name, table, 42, "window_start", ts(13, 1)
    )
    keys = [k for k, _ in s3.puts]
    assert keys == [
        "processed/event_counts_minute/date=2026-11-27/hour=12/batch-000000000042.parquet",
        "processed/event_counts_minute/date=2026-11-27/hour=13/batch-000000000042.parquet",
        commit_marker_key("event_counts_minute", 42),
    ]
    assert marker is not None and [o.rows for o in marker.objects] == [2, 1]
    written = CommitMarker.model_validate_json(s3.puts[-1][1])
    assert written.max_received_at == ts(13, 1)
    part = pq.read_table(pa.BufferReader(s3.puts[0][1]))
    assert part.column("batch_id").to_pylist() == [42, 42]
    # The same batch again writes the same names: a retry overwrites, never adds.
    again = RecordingS3()
    LakeWriter(again, "bucket").write_table(EVENT_COUNTS_MINUTE.name, table, 42, "window_start")
    assert [k for k, _ in again.puts] == keys
    assert (
        LakeWriter(RecordingS3(), "b").write_table("x", table.slice(0, 0), 1, "window_start")
        is None
    )


def test_partitions_of_splits_by_utc_hour() -> None:
    table = pa.table({"t": pa.array([ts(23, 59), ts(0, 1)], pa.timestamp("us", "UTC"))})
    assert [(d, h, p.num_rows) for d, h, p in partitions_of(table, "t")] == [
        ("2026-11-27", "00", 1),
        ("2026-11-27", "23", 1),
    ]


def test_raw_and_error_objects() -> None:
    records = pa.table(
        {
            "kafka_timestamp": pa.array([ts(12), ts(12)], pa.timestamp("us", "UTC")),
            "value": pa.array([b'{"a":1}', b"\xff"], pa.binary()),
        }
    )
    s3 = RecordingS3()
    writer = LakeWriter(s3, "bucket")
    assert writer.write_raw(records, 7) == [
        "raw/events/date=2026-11-27/hour=12/batch_id=7/part-00000.json.gz"
    ]
    assert gzip.decompress(s3.puts[0][1]) == b'{"a":1}\n\xff\n'
    errors = (
        records.append_column("kafka_topic", pa.array(["t", "t"]))
        .append_column("kafka_partition", pa.array([0, 1], pa.int32()))
        .append_column("kafka_offset", pa.array([5, 6], pa.int64()))
        .append_column("reason", pa.array(["malformed_json", "malformed_json"]))
    )
    key = writer.write_errors(errors, 7)[0]
    assert key == "errors/events/date=2026-11-27/hour=12/batch-000000000007.jsonl.gz"
    lines = [orjson.loads(x) for x in gzip.decompress(s3.puts[-1][1]).splitlines()]
    assert lines[0]["value"] == '{"a":1}' and lines[0]["offset"] == 5
    assert lines[1]["value"] is None and lines[1]["value_base64"] == "/w=="
    assert lines[1]["reason"] == "malformed_json" and lines[1]["partition"] == 1


def test_progress_reports_become_samples() -> None:
    progress = {
        "name": "windows",
        "numInputRows": 10,
        "inputRowsPerSecond": 5.0,
        "processedRowsPerSecond": 20.0,
        "durationMs": {"triggerExecution": 1500},
        "timestamp": "2026-11-27T12:10:00.000Z",
        "eventTime": {"watermark": "2026-11-27T12:08:00.000Z"},
        "stateOperators": [
            {"operatorName": "stateStoreSave", "numRowsTotal": 7, "numRowsDroppedByWatermark": 9},
            {
                "operatorName": "dedupeWithinWatermark",
                "numRowsTotal": 3,
                "numRowsDroppedByWatermark": 2,
            },
        ],
    }
    late_before = metrics.LATE_EVENTS._value.get()
    metrics.record_progress(progress)
    assert metrics.LATE_EVENTS._value.get() - late_before == 2
    assert metrics.STATE_ROWS.labels("windows")._value.get() == 10
    assert metrics.WATERMARK_DELAY.labels("windows")._value.get() == 120.0
    # Another query dropping the same late events does not count them again.
    metrics.record_progress({**progress, "name": "sessions"})
    assert metrics.LATE_EVENTS._value.get() - late_before == 2
