"""The stream processor on real Kafka and S3: exact data sets from a messy stream, and a
SIGKILL mid-stream that neither loses nor doubles anything."""

from __future__ import annotations

import os
import random
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from clickstream_local.supervisor import group_members
from tests.conftest import RunningStack, StackFactory, wait_for
from tests.processor.streamdata import (
    Lake,
    Sender,
    diff,
    expected_sessions,
    expected_windows,
    lake_sessions,
    lake_windows,
    shopper_events,
    simple_event,
    t,
)

pytestmark = [pytest.mark.platform, pytest.mark.spark]

GAP = timedelta(minutes=2)
PROCESSOR_ENV = {
    # Longer than the span of the shuffled test stream: out of order is not late there.
    "PROCESSOR_WATERMARK_DELAY": "10 minutes",
    "PROCESSOR_SESSION_GAP": "2 minutes",
    "PROCESSOR_TRIGGER_INTERVAL": "2 seconds",
    "PROCESSOR_SESSIONS_TRIGGER_INTERVAL": "2 seconds",
    # Small micro-batches, so the stream spans many of them.
    "PROCESSOR_MAX_OFFSETS_PER_TRIGGER": "1500",
}
WINDOW_SETS = (
    "event_counts_minute",
    "active_users_5m",
    "page_views_minute",
    "product_stats_minute",
)


def processor_stack(stack_factory: StackFactory) -> RunningStack:
    return stack_factory(services=("stream-processor",), env={"stream-processor": PROCESSOR_ENV})


def processor_metric(stack: RunningStack, name: str) -> float:
    port = stack.stack.config.processor_metrics_port
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith(f"{name}_created")
    )


# The data set whose commit markers each stateful query writes on every batch (empty ones
# too), with the bus offsets its input reached.
QUERY_MARKERS = {"windows": "active_users_5m", "sessions": "sessions"}


def consumed(stack: RunningStack, query: str) -> int:
    """Records a stateful query has read and committed, by its newest commit marker."""
    read = Lake(stack.info).records_read(QUERY_MARKERS[query])
    return max(read, default=0)


def drained(stack: RunningStack, sent: int) -> None:
    """Wait until the stateful queries have read everything sent: a watermark jump from
    events sent later can then not make earlier ones late."""
    wait_for(
        lambda: all(consumed(stack, q) >= sent for q in ("windows", "sessions")) or None,
        timeout=420,
        interval=3,
        what=f"the stateful queries to read all {sent} records",
    )


def closing_events(prefix: str, at: datetime, count: int = 3) -> list[dict[str, Any]]:
    """Events far enough ahead to move both watermarks past every earlier window and session."""
    return [simple_event(f"{prefix}-{i}", f"{prefix}-user-{i}", at) for i in range(count)]


def check_windows_and_sessions(
    lake: Lake, counted: list[dict[str, Any]], closed: list[dict[str, Any]]
) -> str | None:
    """None when the lake holds exactly the expected values, else what differs."""
    expected = expected_windows(counted)
    got = lake_windows(lake)
    for name in WINDOW_SETS:
        if got[name] != expected[name]:
            return f"{name}: {diff(expected[name], got[name])}"
    sessions = expected_sessions(closed, GAP)
    got_sessions = lake_sessions(lake)
    if got_sessions != sessions:
        return f"sessions: {diff(sessions, got_sessions)}"
    return None


def close_and_wait_exact(
    stack: RunningStack,
    sender: Sender,
    lake: Lake,
    counted: list[dict[str, Any]],
    t0: datetime,
    timeout: float,
    what: str,
) -> list[dict[str, Any]]:
    """Once the stateful queries have read everything sent, send events that close every
    earlier window and session, and wait until the lake holds exactly `counted`'s windows and
    sessions (the closing users' sessions stay open). Returns the closing events."""
    drained(stack, len(sender.sent.records))
    closing = closing_events("close", t0 + timedelta(minutes=30))
    sender.send(closing)
    wait_for(
        lambda: check_windows_and_sessions(lake, counted + closing, counted) is None or None,
        timeout=timeout,
        interval=5,
        what=what,
    )
    return closing


def test_messy_stream_gives_exact_data_sets(stack_factory: StackFactory) -> None:
    stack = processor_stack(stack_factory)
    lake = Lake(stack.info)
    sender = Sender(stack.info.kafka_bootstrap)
    rng = random.Random(4)
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)

    shoppers = shopper_events(seed=11, start=t0, minutes=6, count=1500)
    for e in shoppers[::50]:
        e["event_type"] = e["event_type"].upper()  # normalised to lower case
    bots = [
        {
            **simple_event(f"bot-{i}", f"crawler-{i % 3}", t0 + timedelta(seconds=7 * i)),
            "user_agent_info": {"is_bot": True, "device_class": "bot"},
        }
        for i in range(40)
    ]
    # A producer that bypasses the collector, with a device clock in 2099 and a receive time
    # within the span. Bounded to its receive time before the watermark; unbounded, it would
    # move both watermarks to 2099 and make every later record late. A bot: the aggregates
    # leave it out, so the expected figures below stay the same.
    wrong_clock = {
        **simple_event("wrong-clock", "crawler-2099", t0 + timedelta(minutes=3)),
        "timestamp": "2099-01-01T00:00:00+00:00",
        "event_time": "2099-01-01T00:00:00+00:00",
        "user_agent_info": {"is_bot": True, "device_class": "bot"},
    }
    wrong_clock["received_at"] = (t0 + timedelta(minutes=3)).isoformat()
    stream = shoppers + bots
    rng.shuffle(stream)  # out of order within the span
    stream.insert(300, wrong_clock)
    duplicates = rng.sample(shoppers, 120)  # retried requests: same event ids again
    sender.send(stream[:900])
    sender.send([{**e, "received_at": datetime.now(UTC).isoformat()} for e in duplicates[:60]])
    sender.send(stream[900:])
    sender.send_bad(
        [
            b"{not json",
            b"\xff\xfe\x00 not utf-8",
            b'{"event_id": "x1", "event_type": "click"}',
            orjson_bytes(
                {**shoppers[0], "event_id": "bad-1", "user_id": None, "anonymous_id": None}
            ),
            orjson_bytes({**shoppers[1], "event_id": "bad-2", "event_type": "Not Valid!"}),
            orjson_bytes({**shoppers[2], "event_id": "bad-3", "quantity": -5}),
            orjson_bytes({**shoppers[3], "event_id": "bad-4", "price": "free"}),
        ]
    )
    sender.send([{**e, "received_at": datetime.now(UTC).isoformat()} for e in duplicates[60:]])
    normalised = [{**e, "event_type": e["event_type"].lower()} for e in shoppers]
    closing = close_and_wait_exact(
        stack, sender, lake, normalised, t0, 420, "exact window and session data sets"
    )

    # Now events far behind the watermark: into the events data set, not into any aggregate.
    late = [
        simple_event(f"late-{i}", f"late-user-{i}", t0 + timedelta(minutes=1)) for i in range(10)
    ]
    sender.send(late)
    wait_for(
        lambda: processor_metric(stack, "processor_late_events_total") >= len(late) or None,
        timeout=180,
        interval=2,
        what="the late events to be counted",
    )
    valid_ids = {e["event_id"] for e in shoppers + bots + closing + late + [wrong_clock]}
    wait_for(
        lambda: set(k[-1] for k in lake.final("events")) >= valid_ids or None,
        timeout=180,
        interval=3,
        what="every valid event in the events data set",
    )
    problem = check_windows_and_sessions(lake, normalised + closing, normalised)
    assert problem is None, problem
    assert processor_metric(stack, "processor_late_events_total") == len(late)

    events = lake.final("events")
    # The events key is (source, event_id): an event_id is unique within its source.
    assert set(k[-1] for k in events) == valid_ids
    for e in normalised + bots + late:
        row = events[(e["source"], e["event_id"])]
        assert row["event_type"] == e["event_type"]
        assert row["event_time"] == t(e["event_time"])
        assert row["user_key"] == (e.get("user_id") or e["anonymous_id"])
    assert all(events[(b["source"], b["event_id"])]["user_agent_info_is_bot"] for b in bots)
    bounded = events[(wrong_clock["source"], "wrong-clock")]
    assert bounded["event_time"] == t0 + timedelta(minutes=3)
    assert bounded["original_event_time"] == datetime(2099, 1, 1, tzinfo=UTC)
    assert bounded["event_time_adjusted"] == "ahead"

    errors = lake.errors()
    assert len(errors) == sender.sent.bad == 7
    assert Counter(e["reason"] for e in errors) == Counter(
        {
            "malformed_json": 2,
            "invalid_timestamp": 1,
            "missing_identity": 1,
            "invalid_event_type": 1,
            "out_of_range_quantity": 1,
            "invalid_price": 1,
        }
    )
    assert processor_metric(stack, "processor_error_records_total") == 7
    # The raw zone holds every consumed record, duplicates and bad ones too, exactly once.
    assert lake.raw_records() == Counter(sender.sent.records)


def orjson_bytes(value: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(value)


def kill_group(pid: int) -> None:
    """SIGKILL the processor and its Spark JVM (one process group, started by the stack)."""
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not group_members(pid) or None, timeout=30, what="the killed processor to go")


def test_sigkill_mid_stream_loses_and_doubles_nothing(stack_factory: StackFactory) -> None:
    stack = processor_stack(stack_factory)
    lake = Lake(stack.info)
    sender = Sender(stack.info.kafka_bootstrap)
    processor = stack.stack.components["stream-processor"]
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    shoppers = shopper_events(seed=23, start=t0, minutes=5, count=6000)

    sender.send(shoppers[:4000])
    # Mid-stream: some batches are committed, most of the topic is not yet read.
    wait_for(lambda: len(lake.markers("events")) >= 1 or None, timeout=240, what="a first commit")
    pid = processor.pid()
    assert pid is not None
    kill_group(pid)
    committed_before = len(lake.markers("events"))

    sender.send(shoppers[4000:])
    processor.launch()
    processor.wait_ready()
    counted = [{**e, "event_type": e["event_type"].lower()} for e in shoppers]
    closing = close_and_wait_exact(
        stack, sender, lake, counted, t0, 480, "exact data sets after the restart"
    )
    ids = {e["event_id"] for e in shoppers + closing}
    wait_for(
        lambda: {r["event_id"] for r in lake.committed_rows("events")} == ids or None,
        timeout=120,
        interval=3,
        what="every event in the events data set",
    )
    assert len(lake.markers("events")) > committed_before

    # No row twice: each event is in exactly one committed object, once.
    rows = Counter(r["event_id"] for r in lake.committed_rows("events"))
    assert max(rows.values()) == 1 and set(rows) == ids
    # No object twice, and none that a marker does not name (a killed batch rewrote its own).
    for dataset in ("events", *WINDOW_SETS, "sessions"):
        named = [o.key for m in lake.markers(dataset) for o in m.objects]
        assert len(named) == len(set(named))
        stored = [k for k in lake.keys(f"processed/{dataset}/") if "/_commits/" not in k]
        assert sorted(stored) == sorted(named), dataset
    # The raw zone has every record exactly once.
    assert lake.raw_records() == Counter(sender.sent.records)
