"""A backlog of the largest events on real Kafka and S3: the processor reads it in micro-batches
bounded by bytes (PROCESSOR_MAX_BATCH_BYTES), never fails on it, and writes every event to the
lake exactly once; and a batch three times the driver's result limit commits, because the
executors write the events and the driver collects only a row per object."""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_processor.config import RESULT_BYTES_PER_RECORD_BYTE, Settings
from tests.conftest import RunningStack, StackFactory, wait_for
from tests.processor.streamdata import Lake, Sender, simple_event
from tests.processor.test_exactly_once import QUERY_MARKERS, drained, processor_metric

pytestmark = [pytest.mark.platform, pytest.mark.spark]

EVENT_BYTES = 32 * 1024  # the collector's default limit of one event (INGEST_MAX_EVENT_BYTES)
MIB = 2**20
# A deliberately small driver: one collect may bring 8 MiB, so a batch may read 4 MiB of
# records, and with records of at most 40 KiB that is 102 records per trigger.
PROCESSOR_ENV = {
    "PROCESSOR_DRIVER_MEMORY": "1g",
    "PROCESSOR_DRIVER_MAX_RESULT_SIZE": "8m",
    "PROCESSOR_MAX_BATCH_BYTES": str(8 * MIB // RESULT_BYTES_PER_RECORD_BYTE),
    "PROCESSOR_MAX_RECORD_BYTES": str(40 * 1024),
    "PROCESSOR_TRIGGER_INTERVAL": "2 seconds",
    "PROCESSOR_SESSIONS_TRIGGER_INTERVAL": "2 seconds",
}
BACKLOG = 700  # about 23 MB: seven times what one batch may hold


def large_event(i: int, at: datetime) -> dict[str, Any]:
    """An event of exactly EVENT_BYTES as the collector received it (free-form properties of
    incompressible text), with the fields the collector adds."""
    event = simple_event(f"big-{i:05d}", f"user-{i % 37}", at + timedelta(milliseconds=i))
    original = {k: event[k] for k in ("event_id", "event_type", "timestamp", "user_id")}
    original["page_url"] = event["page_url"]
    filler = hashlib.sha256(str(i).encode()).hexdigest() * (EVENT_BYTES // 64 + 1)
    base = len(orjson.dumps({**original, "properties": {"note": ""}}))
    event["properties"] = {"note": filler[: EVENT_BYTES - base]}
    assert len(orjson.dumps({**original, "properties": event["properties"]})) == EVENT_BYTES
    return event


def checkpoint_batches(stack: RunningStack) -> list[int]:
    """Records each committed batch of the lake query read, from its checkpoint's offsets."""
    root = Path(stack.stack.config.data_dir) / "checkpoints" / "stream-processor" / "lake"
    committed = sorted(int(p.name) for p in (root / "commits").glob("[0-9]*"))
    sizes, before = [], 0
    for batch in committed:
        last = (root / "offsets" / str(batch)).read_text().strip().splitlines()[-1]
        total = sum(sum(parts.values()) for parts in json.loads(last).values())
        sizes.append(total - before)
        before = total
    return sizes


def backlog_then_processor(
    stack_factory: StackFactory, env: dict[str, str]
) -> tuple[RunningStack, Sender, list[dict[str, Any]]]:
    """A platform with BACKLOG large events on the topic, then the processor started on it."""
    stack = stack_factory(env={"stream-processor": env})
    sender = Sender(stack.info.kafka_bootstrap)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    events = [large_event(i, t0) for i in range(BACKLOG)]
    sender.send(events)
    stack.stack.components["stream-processor"].launch()
    return stack, sender, events


def every_event_committed_once(lake: Lake, events: list[dict[str, Any]], timeout: float) -> None:
    """Wait until the events data set's committed objects hold every event, then check each
    is there once."""
    ids = {e["event_id"] for e in events}
    wait_for(
        lambda: {r["event_id"] for r in lake.committed_rows("events")} == ids or None,
        timeout=timeout,
        interval=3,
        what="every large event in the events data set",
    )
    rows = [r["event_id"] for r in lake.committed_rows("events")]
    assert len(rows) == BACKLOG and set(rows) == ids


def test_a_backlog_of_32_kb_events_is_read_in_bounded_batches_exactly_once(
    stack_factory: StackFactory,
) -> None:
    settings = Settings(**{k.lower(): v for k, v in PROCESSOR_ENV.items()})  # type: ignore[arg-type]
    bound = settings.records_per_trigger
    assert bound == 102
    stack, sender, events = backlog_then_processor(stack_factory, PROCESSOR_ENV)
    lake = Lake(stack.info)
    record_bytes = {len(r) for r in sender.sent.records}
    assert max(record_bytes) <= settings.processor_max_record_bytes
    assert BACKLOG * min(record_bytes) > 5 * settings.max_batch_bytes  # several batches' worth

    processor = stack.stack.components["stream-processor"]
    processor.wait_ready()
    drained(stack, BACKLOG)
    every_event_committed_once(lake, events, timeout=300)
    assert lake.errors() == []  # nothing rejected
    assert processor_metric(stack, "processor_error_records_total") == 0
    # Each lake batch read at most the bound, by its commit marker's offsets and rows.
    markers = sorted(lake.markers("events"), key=lambda m: m.batch_id)
    read = 0
    for marker in markers:
        assert marker.source_offsets is not None
        end = sum(sum(parts.values()) for parts in marker.source_offsets.values())
        in_batch = sum(o.rows for o in marker.objects)
        assert in_batch == end - read <= bound, marker.batch_id
        assert in_batch * max(record_bytes) <= settings.max_batch_bytes
        read = end
    assert read == BACKLOG and len(markers) >= BACKLOG // bound
    sizes = checkpoint_batches(stack)
    assert sum(sizes) == BACKLOG and max(sizes) <= bound, sizes
    # The stateful queries read the lake's batches back under the same bound (whole lake
    # batches, up to the bound's rows): by their markers, each reached the end of the topic
    # and no batch of theirs read more records than the bound.
    for dataset in QUERY_MARKERS.values():
        reached = [0, *lake.records_read(dataset)]
        steps = [b - a for a, b in itertools.pairwise(reached)]
        assert reached[-1] == BACKLOG and max(steps) <= bound, (dataset, steps)
    # No query failed on the backlog (a failed one stops the process: not ready).
    assert processor.pid() is not None
    processor.wait_ready()


def test_the_same_backlog_in_one_batch_passes_the_small_driver(
    stack_factory: StackFactory,
) -> None:
    """Budgeting for 1 KiB records, the same settings put the whole backlog (about 23 MB, three
    times spark.driver.maxResultSize) in one lake batch. Its events never reach the driver:
    the executors write them and the driver collects a row per object, so the batch commits.
    On the design that collected each batch to the driver (`toArrow`), this very setup failed
    the lake query on the result limit (this test's former control asserted that failure)."""
    env = {**PROCESSOR_ENV, "PROCESSOR_MAX_RECORD_BYTES": "1024"}
    settings = Settings(**{k.lower(): v for k, v in env.items()})  # type: ignore[arg-type]
    assert settings.records_per_trigger > BACKLOG
    stack, sender, events = backlog_then_processor(stack_factory, env)
    assert sum(len(r) for r in sender.sent.records) > 2 * settings.driver_max_result_bytes
    lake = Lake(stack.info)
    processor = stack.stack.components["stream-processor"]
    processor.wait_ready()
    every_event_committed_once(lake, events, timeout=420)
    # The whole backlog was one batch of the lake query, and it committed.
    assert checkpoint_batches(stack)[0] == BACKLOG
    markers = sorted(lake.markers("events"), key=lambda m: m.batch_id)
    assert sum(o.rows for o in markers[0].objects) == BACKLOG
    log = stack.stack.components["stream-processor"].supervisor.log_file("stream-processor")
    assert "spark.driver.maxResultSize" not in log.read_text(errors="replace")
    assert processor.pid() is not None
    processor.wait_ready()
