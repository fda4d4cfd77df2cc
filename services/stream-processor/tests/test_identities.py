"""Identity links derived from a batch of events (Arrow, static data), and the same mapping
on Spark frames for the correction pass."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
from pyspark.sql import SparkSession

from clickstream_common.tables import EVENTS, IDENTITIES
from stream_processor.identities import (
    identity_rows,
    previous_id,
    stitched_user_key,
    write_identities,
)
from stream_processor.sinks import LakeWriter


def at(minute: int, second: int = 0) -> datetime:
    return datetime(2026, 11, 28, 12, minute, second, tzinfo=UTC)


def events(*rows: dict[str, Any]) -> pa.Table:
    """Rows in the events data set's shape (only the columns identities read are set)."""
    names = ("event_id", "event_type", "event_time", "source", "user_id", "anonymous_id")
    columns: dict[str, list[Any]] = {n: [r.get(n) for r in rows] for n in names}
    columns["properties"] = [
        orjson.dumps(r["properties"]).decode() if "properties" in r else None for r in rows
    ]
    return pa.table(
        {
            **{n: pa.array(v, pa.string()) for n, v in columns.items() if n != "event_time"},
            "event_time": pa.array(columns["event_time"], pa.timestamp("us", tz="UTC")),
        }
    )


def row(event_id: str, minute: int, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "event_type": "page_view", "event_time": at(minute),
            "source": "web", **fields}  # fmt: skip


def test_events_with_both_ids_link_them_earliest_first() -> None:
    batch = events(
        row("e1", 1, anonymous_id="a1"),  # anonymous browsing: no link
        row("e3", 3, anonymous_id="a1", user_id="u1", event_type="purchase"),
        row("e2", 2, anonymous_id="a1", user_id="u1", event_type="identify"),
        row("e4", 4, anonymous_id="a2", user_id="u1"),  # the same user on another device
        row("e5", 5, user_id="u2"),  # logged in, no anonymous id
        row("e6", 6, anonymous_id="u3", user_id="u3"),  # the same id twice links nothing
    )
    assert identity_rows(batch).to_pylist() == [
        {"anonymous_id": "a1", "user_id": "u1", "first_seen_at": at(2), "source": "web",
         "event_id": "e2", "linked_by": "event"},
        {"anonymous_id": "a2", "user_id": "u1", "first_seen_at": at(4), "source": "web",
         "event_id": "e4", "linked_by": "event"},
    ]  # fmt: skip


def test_a_shared_anonymous_id_belongs_to_the_first_user_seen_with_it() -> None:
    batch = events(
        row("e2", 2, anonymous_id="a1", user_id="second"),
        row("e1", 1, anonymous_id="a1", user_id="first"),
    )
    assert [(r["anonymous_id"], r["user_id"]) for r in identity_rows(batch).to_pylist()] == [
        ("a1", "first")
    ]


def test_ties_in_time_are_broken_by_event_id_so_a_retry_derives_the_same_row() -> None:
    rows = [
        row("e-b", 1, anonymous_id="a1", user_id="u-b"),
        row("e-a", 1, anonymous_id="a1", user_id="u-a"),
    ]
    first = identity_rows(events(*rows)).to_pylist()
    again = identity_rows(events(*reversed(rows))).to_pylist()
    assert first == again
    assert first[0]["user_id"] == "u-a"


def test_alias_links_the_previous_id() -> None:
    batch = events(
        row("e1", 1, event_type="alias", user_id="u-new", properties={"previous_id": "u-old"}),
        row("e2", 2, event_type="alias", user_id="u-x", properties={"previous_id": "u-x"}),
        row("e3", 3, event_type="alias", user_id="u-y", properties={"previous_id": ""}),
        row("e4", 4, event_type="alias", anonymous_id="a9", properties={"previous_id": "p"}),
    )
    assert identity_rows(batch).to_pylist() == [
        {"anonymous_id": "u-old", "user_id": "u-new", "first_seen_at": at(1), "source": "web",
         "event_id": "e1", "linked_by": "alias"},
    ]  # fmt: skip


def test_previous_id_reads_what_the_mapping_keeps() -> None:
    assert previous_id('{"previous_id": "a-1"}') == "a-1"
    assert previous_id('{"previous_id": 42}') == "42"
    for text in (None, "", "{bad", "[]", '{"previous_id": null}', '{"previous_id": true}'):
        assert previous_id(text) is None


def test_no_links_no_data_set_object() -> None:
    class NoWrites:
        def put_object(self, **_: Any) -> None:
            raise AssertionError("nothing to write")

    batch = events(row("e1", 1, anonymous_id="a1"))
    assert identity_rows(batch).num_rows == 0
    write_identities(LakeWriter(NoWrites(), "bucket"), batch, 7, at(1))


def test_written_in_the_identities_columns_with_the_batch_id() -> None:
    puts: list[str] = []

    class Recording:
        def put_object(self, Key: str, **_: Any) -> None:
            puts.append(Key)

    batch = events(row("e1", 1, anonymous_id="a1", user_id="u1"))
    assert set(IDENTITIES.column_names) - {"batch_id"} <= set(identity_rows(batch).column_names)
    assert {"anonymous_id", "user_id", "event_time"} <= set(EVENTS.column_names)
    write_identities(LakeWriter(Recording(), "bucket"), batch, 7, at(1))
    assert puts == [
        "processed/identities/date=2026-11-28/hour=12/batch-000000000007.parquet",
        "processed/identities/_commits/batch-000000000007.json",
    ]


def test_stitched_user_key_follows_the_oldest_batch(spark: SparkSession) -> None:
    frame = spark.createDataFrame(
        [("e1", "a1"), ("e2", "u1"), ("e3", "a2"), ("e4", "a3")], "event_id string, user_key string"
    )
    links = spark.createDataFrame(
        [
            ("a1", "u1", 5, at(1), "x1"),
            ("a2", "late", 9, at(0), "x2"),
            ("a2", "u2", 6, at(3), "x3"),
        ],
        "anonymous_id string, user_id string, batch_id long, first_seen_at timestamp, "
        "event_id string",
    )
    stitched = {r.event_id: r.user_key for r in stitched_user_key(frame, links).collect()}
    assert stitched == {"e1": "u1", "e2": "u1", "e3": "u2", "e4": "a3"}


def test_stitched_sessions_join_on_the_processors_default_gap() -> None:
    """The warehouse view repeats the session gap in SQL; it must be the stream's."""
    from clickstream_common.tables import SESSION_INACTIVITY_GAP
    from stream_processor.config import Settings

    minutes = int(SESSION_INACTIVITY_GAP.total_seconds() // 60)
    assert Settings.model_fields["processor_session_gap"].default == f"{minutes} minutes"
