"""The correction pass's planning (pure) and its recomputation on static frames.

The recomputation tests read Parquet files from a temporary directory instead of S3 (a
`LakeIndex` whose objects are local files); the real-stack test is tests/late/.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from clickstream_common.arrow import arrow_schema
from clickstream_common.lake import CommitMarker, CommittedObject
from clickstream_common.tables import EVENTS, IDENTITIES
from stream_processor import correction
from stream_processor.config import Settings
from stream_processor.correction import (
    Committed,
    PendingSession,
    active_window_starts,
    cover,
    horizon,
    judge_sessions,
    merge_pending,
    minutes_to_read,
    ready_minutes,
)
from stream_processor.progress import parse_offset_log

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
TOPIC = "clickstream.events"


def marker(
    batch: int,
    offsets: dict[str, int] | None,
    watermark: datetime | None = None,
    received: datetime | None = None,
) -> Committed:
    return Committed(
        f"processed/x/_commits/batch-{batch:012d}.json",
        CommitMarker(
            dataset="x",
            batch_id=batch,
            objects=[],
            committed_at=T0,
            watermark=watermark,
            source_offsets={TOPIC: offsets} if offsets is not None else None,
            max_received_at=received,
        ),
    )


def test_offset_log_entries() -> None:
    text = (
        'v1\n{"batchWatermarkMs":1764324000000,"batchTimestampMs":1764324120000,'
        '"conf":{"spark.sql.shuffle.partitions":"2"}}\n{"clickstream.events":{"1":7,"0":12}}\n'
    )
    progress = parse_offset_log(text)
    assert progress.watermark == datetime.fromtimestamp(1764324000, UTC)
    assert progress.source_offsets == {TOPIC: {"0": 12, "1": 7}}
    # No event yet: the epoch, nothing is closed. Another source's offsets: not Kafka's form.
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_offset_log('v1\n{"batchWatermarkMs":0}\n{"logOffset":3}').watermark == epoch
    assert parse_offset_log('v1\n{"batchWatermarkMs":0}\n{"logOffset":3}').source_offsets is None


def test_a_lake_batch_is_bounded_by_the_first_query_batch_that_read_past_it() -> None:
    lake = [marker(1, {"0": 10, "1": 10}), marker(2, {"0": 20, "1": 15}), marker(3, {"0": 30})]
    wm = [T0 + timedelta(minutes=k) for k in range(4)]
    windows = [
        marker(7, {"0": 5, "1": 5}, wm[0]),
        marker(8, {"0": 12, "1": 10}, wm[1]),  # covers lake batch 1
        marker(9, {"0": 20, "1": 16}, None),  # no watermark recorded: not used
        marker(10, {"0": 25, "1": 16}, wm[3]),  # covers lake batch 2
    ]
    covers, used = cover(lake, windows)
    assert covers == {1: wm[1], 2: wm[3]}  # batch 3 waits for a later windows batch
    assert used == 3  # markers before the last covering one are not needed again
    # Without offsets, by the newest receive time.
    by_time = [marker(1, None, received=T0)]
    assert cover(by_time, [marker(5, None, wm[2], received=T0 + timedelta(seconds=1))])[0] == {
        1: wm[2]
    }


def test_the_horizon_is_the_newest_watermark_whose_input_the_lake_holds() -> None:
    lake_end = marker(4, {"0": 20, "1": 20}).marker
    windows = [
        marker(7, {"0": 10, "1": 10}, T0),
        marker(8, {"0": 20, "1": 19}, T0 + timedelta(minutes=1)),
        marker(9, {"0": 21, "1": 19}, T0 + timedelta(minutes=2)),  # read past the lake
    ]
    assert horizon(windows, lake_end) == T0 + timedelta(minutes=1)
    assert horizon([], lake_end) is None


def test_minutes_wait_until_every_window_holding_them_is_closed() -> None:
    m = T0 + timedelta(minutes=3)
    assert ready_minutes([m], m + timedelta(minutes=4, seconds=59)) == []
    assert ready_minutes([m, m], m + timedelta(minutes=5)) == [m]
    assert ready_minutes([m], None) == []
    assert minutes_to_read([m]) == [m + timedelta(minutes=k) for k in range(-4, 5)]
    assert active_window_starts([m]) == [m - timedelta(minutes=k) for k in range(4, -1, -1)]


def test_pending_sessions_merge_per_user_and_cluster() -> None:
    gap = timedelta(minutes=30)
    merged = merge_pending(
        [
            PendingSession(user_key="u", first=T0, last=T0),
            PendingSession(
                user_key="u", first=T0 + timedelta(hours=1), last=T0 + timedelta(hours=1)
            ),
            PendingSession(user_key="u", first=T0 + timedelta(days=2), last=T0 + timedelta(days=2)),
            PendingSession(user_key="v", first=T0, last=T0),
        ],
        gap,
    )
    assert [(p.user_key, p.first, p.last) for p in merged] == [
        ("u", T0, T0 + timedelta(hours=1)),
        ("u", T0 + timedelta(days=2), T0 + timedelta(days=2)),
        ("v", T0, T0),
    ]


def test_sessions_are_written_closed_and_whole_else_read_more_or_wait() -> None:
    gap = timedelta(minutes=2)

    def at(minutes: float) -> datetime:
        return T0 + timedelta(minutes=minutes)

    sessions = {
        "done": [(at(10), at(12)), (at(20), at(21)), (at(30), at(31))],
        "open": [(at(10), at(40))],
        "cut": [(at(1), at(12))],
    }
    seeds = [
        PendingSession(user_key="done", first=at(11), last=at(30.5)),
        PendingSession(user_key="open", first=at(15), last=at(15)),
        PendingSession(user_key="cut", first=at(5), last=at(5)),
        PendingSession(user_key="bot", first=at(5), last=at(5)),
    ]
    verdicts = judge_sessions(seeds, sessions, at(0), at(60), at(41), gap)
    # Every session between the first and the last affected one: the three of "done".
    assert verdicts.emit == {"done": (at(10), at(30))}
    # "open" ends at 40: with the gap it closes after the horizon (41).
    assert [p.user_key for p in verdicts.pending] == ["open", "bot"]
    # "cut" starts 1 minute after the read range: an earlier event could belong to it.
    assert [p.user_key for p in verdicts.widen] == ["cut"]


# --------------------------------------------------------------------------------------------
# Recomputing from the lake, on static frames


class FolderLake(correction.LakeIndex):
    """Events objects in a local folder, named like the lake's."""

    def __init__(self, root: Path) -> None:
        super().__init__(s3=None, bucket="lake", filesystem=pafs.LocalFileSystem())
        self.root = root

    def path(self, key: str) -> str:
        return str(self.root / key)

    def event_objects(self, hours: Iterable[datetime], upto: int) -> list[str]:
        wanted = {f"date={h:%Y-%m-%d}/hour={h:%H}" for h in hours}
        return sorted(
            str(p.relative_to(self.root))
            for p in self.root.rglob("*.parquet")
            if any(w in str(p) for w in wanted) and int(p.stem.split("-")[1]) <= upto
        )

    def identity_objects(self) -> list[str]:
        return sorted(
            str(p.relative_to(self.root))
            for p in (self.root / "processed/identities").rglob("*.parquet")
        )


def event_row(event_id: str, user: str, at: datetime, batch: int, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {c: None for c in EVENTS.column_names}
    row |= {
        "event_id": event_id,
        "event_type": "page_view",
        "timestamp": at,
        "event_time": at,
        "received_at": at,
        "source": "web",
        "user_id": user,
        "user_key": user,
        "page_url": "https://shop.example.com/a",
        "page_path": "/a",
        "future_dated": False,
        "batch_id": batch,
    }
    return row | fields


def write_events(root: Path, batch: int, rows: list[dict[str, Any]]) -> None:
    from stream_processor.sinks import partitions_of

    # An object written before a column was added to the spec lacks it.
    schema = arrow_schema(EVENTS, [c for c in EVENTS.column_names if c != "event_time_adjusted"])
    table = pa.Table.from_pylist(rows, schema=schema)
    for date, hour, part in partitions_of(table, "event_time"):
        folder = root / f"processed/events/date={date}/hour={hour}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, folder / f"batch-{batch:012d}.parquet")


@pytest.mark.spark
def test_windows_and_sessions_are_recomputed_from_every_committed_event(
    spark: SparkSession, tmp_path: Path
) -> None:
    settings = Settings(processor_session_gap="2 minutes")
    lake = FolderLake(tmp_path)
    m = T0 + timedelta(minutes=5)
    write_events(
        tmp_path,
        1,
        [
            event_row("a", "u1", m + timedelta(seconds=10), 1),
            event_row("b", "u2", m + timedelta(seconds=20), 1),
            event_row("c", "u1", m - timedelta(minutes=3), 1),  # u1's earlier session
        ],
    )
    # Batch 2: a late event of u3, a duplicate of "a" (a retry), u1 bridging its sessions.
    write_events(
        tmp_path,
        2,
        [
            event_row("l", "u3", m + timedelta(seconds=30), 2),
            event_row("a", "u1", m + timedelta(seconds=10), 2),
            event_row("d", "u1", m - timedelta(minutes=1, seconds=30), 2),
        ],
    )
    # Batch 3 is not committed in this snapshot (upto=2): never read.
    write_events(tmp_path, 3, [event_row("z", "u9", m + timedelta(seconds=40), 3)])

    tables = correction.recompute_windows(spark, lake, [m], 2, settings)
    counts = tables["event_counts_minute"].to_pylist()
    assert [
        (r["window_start"], r["event_type"], r["events"], r["unique_users"]) for r in counts
    ] == [(m, "page_view", 3, 3)]
    active = {r["window_start"]: r["active_users"] for r in tables["active_users_5m"].to_pylist()}
    # The five 5-minute windows holding minute m; u1's events 1.5 and 3 minutes before count
    # in those that reach back that far.
    assert active == {
        m - timedelta(minutes=4): 3,
        m - timedelta(minutes=3): 3,
        m - timedelta(minutes=2): 3,
        m - timedelta(minutes=1): 3,
        m: 3,
    }
    pages = tables["page_views_minute"].to_pylist()
    assert [(r["page_path"], r["views"], r["unique_visitors"]) for r in pages] == [("/a", 3, 3)]

    seeds = [
        PendingSession(
            user_key="u1",
            first=m - timedelta(minutes=1, seconds=30),
            last=m - timedelta(minutes=1, seconds=30),
        )
    ]
    result = correction.recompute_sessions(spark, lake, seeds, 2, m + timedelta(hours=1), settings)
    assert result.users == 1 and not result.pending
    assert result.rows is not None
    [merged] = result.rows.to_pylist()
    # "c" (m-3), "d" (m-1.5) and "a" (m+10 s) are one session now; the retry counts once.
    assert (merged["session_start"], merged["events"]) == (m - timedelta(minutes=3), 3)


def committed_events(root: Path, batch: int) -> Committed:
    keys = sorted(str(p.relative_to(root)) for p in root.rglob(f"batch-{batch:012d}.parquet"))
    objects = [CommittedObject(key=k, rows=pq.read_metadata(root / k).num_rows) for k in keys]
    return Committed(
        f"processed/events/_commits/batch-{batch:012d}.json",
        CommitMarker(dataset="events", batch_id=batch, objects=objects, committed_at=T0),
    )


def test_suspects_are_the_events_at_or_behind_the_watermark_that_read_them(tmp_path: Path) -> None:
    lake = FolderLake(tmp_path)
    m = T0 + timedelta(minutes=5)
    write_events(
        tmp_path,
        1,
        [
            event_row("on-time", "u1", m + timedelta(minutes=3), 1),
            event_row("late", "u2", m + timedelta(seconds=5), 1),
            event_row("late-too", "u2", m + timedelta(minutes=1), 1),
            event_row("bot", "u3", m, 1, user_agent_info_is_bot=True),
        ],
    )
    write_events(tmp_path, 2, [event_row("early", "u4", m - timedelta(minutes=1), 2)])
    batches = [committed_events(tmp_path, 1), committed_events(tmp_path, 2)]
    # Batch 1 met watermark m + 1 min in the windows query, m in the sessions query; batch
    # 2 is not read past yet by the sessions query.
    found = correction.find_suspects(
        lake, batches, {1: m + timedelta(minutes=1), 2: m}, {1: m}, exclude_bots=True
    )
    # At or behind the watermark: "late" (m + 5 s), "late-too" (m + 1 min), "early"; the bot
    # is not aggregated at all; "on-time" is after it.
    assert (found.windows_late, found.sessions_late) == (3, 0)
    assert found.minutes == {m, m + timedelta(minutes=1), m - timedelta(minutes=1)}
    assert found.sessions == []
    with_bots = correction.find_suspects(
        lake, batches[:1], {1: m}, {1: m + timedelta(seconds=5)}, exclude_bots=False
    )
    assert with_bots.minutes == {m}
    assert sorted((p.user_key, p.first, p.last) for p in with_bots.sessions) == [
        ("u2", m + timedelta(seconds=5), m + timedelta(seconds=5)),
        ("u3", m, m),
    ]


def write_identities(root: Path, batch: int, rows: list[dict[str, Any]]) -> None:
    table = pa.Table.from_pylist(
        [r | {"batch_id": batch} for r in rows], schema=arrow_schema(IDENTITIES)
    )
    folder = root / "processed/identities/date=2026-11-28/hour=10"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"batch-{batch:012d}.parquet")


def link(anonymous: str, user: str, at: datetime, event_id: str) -> dict[str, Any]:
    return {
        "anonymous_id": anonymous,
        "user_id": user,
        "first_seen_at": at,
        "source": "web",
        "event_id": event_id,
        "linked_by": "event",
    }


@pytest.mark.spark
def test_a_visitor_linked_to_a_user_counts_once_in_the_final_windows(
    spark: SparkSession, tmp_path: Path
) -> None:
    settings = Settings()
    lake = FolderLake(tmp_path)
    m = T0 + timedelta(minutes=5)
    # Anonymous browsing, then login (an event with both ids), then browsing as the user.
    write_events(
        tmp_path,
        1,
        [
            event_row("e1", None, m + timedelta(seconds=5), 1, anonymous_id="anon-1")
            | {"user_key": "anon-1"},
            event_row("e2", "user-1", m + timedelta(seconds=20), 1, anonymous_id="anon-1"),
            event_row("e3", "user-1", m + timedelta(seconds=40), 1),
            event_row("e4", "other", m + timedelta(seconds=50), 1),
        ],
    )
    before = correction.recompute_windows(spark, lake, [m], 1, settings)
    [counts] = before["event_counts_minute"].to_pylist()
    assert (counts["events"], counts["unique_users"]) == (4, 3)

    write_identities(tmp_path, 1, [link("anon-1", "user-1", m + timedelta(seconds=20), "e2")])
    after = correction.recompute_windows(spark, lake, [m], 1, settings)
    [counts] = after["event_counts_minute"].to_pylist()
    assert (counts["events"], counts["unique_users"]) == (4, 2)
    active = {r["window_start"]: r["active_users"] for r in after["active_users_5m"].to_pylist()}
    assert set(active.values()) == {2}
    [pages] = after["page_views_minute"].to_pylist()
    assert (pages["views"], pages["unique_visitors"]) == (4, 2)


@pytest.mark.spark
def test_events_after_an_object_with_no_matching_row_are_counted(
    spark: SparkSession, tmp_path: Path
) -> None:
    # A filtered read gives one Arrow chunk per object; PySpark 4.2 dropped every row after
    # an empty chunk (late events in a later batch were never recomputed).
    settings = Settings()
    lake = FolderLake(tmp_path)
    m = T0 + timedelta(minutes=30)
    write_events(tmp_path, 1, [event_row("a", "u1", m + timedelta(seconds=1), 1)])
    write_events(tmp_path, 2, [event_row("far", "u2", m + timedelta(minutes=20), 2)])
    write_events(tmp_path, 3, [event_row("late", "u3", m + timedelta(seconds=9), 3)])
    tables = correction.recompute_windows(spark, lake, [m], 3, settings)
    [counts] = tables["event_counts_minute"].to_pylist()
    assert (counts["events"], counts["unique_users"]) == (2, 2)
