"""Events 10 minutes late reach the final aggregates, on the real stack.

Kafka, Spark (the streaming job and the correction pass as the local stack runs them), S3,
the loader and PostgreSQL. The stream finalises four minutes of traffic; then events of those
minutes arrive 10 to 14 minutes late (the stream drops them from its aggregates), among them
events that merge two closed sessions and one that moves a session's start. The scheduled
correction pass must bring every window and session of those minutes to what an independent
computation over every event gives, and running the pass again (incremental or over the
range) must leave the warehouse as it is.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from clickstream_local.components import child_env
from clickstream_local.config import repo_root
from clickstream_local.services import service_env
from tests.conftest import RunningStack, StackFactory, wait_for
from tests.processor.streamdata import (
    Sender,
    diff,
    enrich,
    expected_sessions,
    expected_windows,
    shopper_events,
    simple_event,
    user_key,
)
from tests.warehouse import in_period, warehouse_sessions, warehouse_windows

pytestmark = [pytest.mark.platform, pytest.mark.spark]

GAP = timedelta(minutes=2)
PROCESSOR_ENV = {
    "PROCESSOR_WATERMARK_DELAY": "2 minutes",
    "PROCESSOR_SESSION_GAP": "2 minutes",
    "PROCESSOR_TRIGGER_INTERVAL": "2 seconds",
    "PROCESSOR_SESSIONS_TRIGGER_INTERVAL": "2 seconds",
}


@contextmanager
def ticking(bootstrap: str, every: float = 3.0) -> Iterator[None]:
    """Live traffic: an event of a new visitor every few seconds, stamped now. It moves the
    watermarks on, and its sessions close a gap later, so every query keeps committing."""
    stop = threading.Event()
    sender = Sender(bootstrap)

    def run() -> None:
        while not stop.wait(every):
            visitor = f"ticker-{uuid.uuid4().hex[:8]}"
            sender.send([simple_event(f"tick-{uuid.uuid4().hex}", visitor, datetime.now(UTC))])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


def correction_markers_loaded(dsn: str, stack: RunningStack) -> int | None:
    """How many correction markers the lake holds, once the ledger holds all of them."""
    info = stack.info
    s3 = info.s3_client()
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=info.s3_bucket, Prefix="processed/"
    ):
        keys |= {o["Key"] for o in page.get("Contents", []) if "/_commits/correction-" in o["Key"]}
    with psycopg.connect(dsn) as conn:
        loaded = {
            r[0]
            for r in conn.execute(
                "SELECT object_key FROM analytics.load_ledger WHERE object_key LIKE %s",
                ("%/_commits/correction-%",),
            ).fetchall()
        }
    return len(keys) if keys and keys <= loaded else None


def run_correction(stack: RunningStack, *args: str) -> str:
    config = stack.stack.config
    env = service_env(config, "stream-processor") | {
        "PROCESSOR_SPARK_MASTER": "local[1]",
        "PROCESSOR_DRIVER_MEMORY": "1g",
        "PYTHONUNBUFFERED": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "stream_processor", "correct", "--no-progress", *args],
        env=child_env(env),
        cwd=repo_root(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def stitched_view(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events as the final figures count them: an anonymous id seen with a user id
    (first link wins) counts as that user, before the link too."""
    links: dict[str, str] = {}
    for e in sorted(events, key=lambda e: e["event_time"]):
        anonymous, user = e.get("anonymous_id"), e.get("user_id")
        if anonymous and user and anonymous != user:
            links.setdefault(anonymous, user)
    return [
        e | {"user_id": links[e["anonymous_id"]]}
        if not e.get("user_id") and e.get("anonymous_id") in links
        else e
        for e in events
    ]


def test_events_ten_minutes_late_reach_the_final_aggregates(stack_factory: StackFactory) -> None:
    stack = stack_factory(
        services=("stream-processor", "warehouse-loader", "correction"),
        # The correction component with its defaults: a pass every 2 minutes.
        env={"stream-processor": PROCESSOR_ENV},
    )
    dsn = stack.info.warehouse_dsn
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    base = now - timedelta(minutes=14)
    period = (base - timedelta(minutes=5), base + timedelta(minutes=5))

    def at(seconds: int) -> datetime:
        return base + timedelta(seconds=seconds)

    # Four minutes of shoppers, and three visitors whose sessions late events will change.
    on_time = shopper_events(seed=404, start=base, minutes=4, count=600)
    on_time += [
        simple_event("merge-1", "late-merge", at(0)),
        simple_event("merge-2", "late-merge", at(50)),
        simple_event("merge-3", "late-merge", at(230), "product_view") | {"product_id": "p-9"},
        simple_event("merge-4", "late-merge", at(270)),
        simple_event("move-1", "late-move", at(60)),
        simple_event("move-2", "late-move", at(90)),
    ]
    # A visitor who browses anonymously, logs in, and browses on: two keys to the stream,
    # one visitor in the final figures (the correction applies the identity link).
    anonymous = simple_event("stitch-1", "", at(20))
    del anonymous["user_id"]
    on_time += [
        anonymous | {"anonymous_id": "stitch-anon"},
        simple_event("stitch-2", "stitch-user", at(30)) | {"anonymous_id": "stitch-anon"},
        simple_event("stitch-3", "stitch-user", at(40)),
    ]
    sender = Sender(stack.info.kafka_bootstrap)
    sender.send(on_time)
    users = {user_key(e) for e in on_time}

    with ticking(stack.info.kafka_bootstrap):
        # The stream finalises the four minutes: windows and sessions reach the warehouse.
        def stream_final() -> bool:
            got = warehouse_windows(dsn, *period)["event_counts_minute"]
            # The live figures, or already the final ones (the scheduled correction applies
            # the identity link once the stream has closed the minute).
            wants = [
                in_period(expected_windows(events), *period)["event_counts_minute"]
                for events in (on_time, stitched_view(on_time))
            ]
            sessions = warehouse_sessions(dsn, {"late-merge", "late-move"})
            return got in wants and len(sessions) == 3

        wait_for(stream_final, 300, interval=3, what="the stream to finalise the four minutes")

        # Events of those minutes, 10 to 14 minutes late (received now).
        received = datetime.now(UTC)
        late = [
            enrich(e | {"event_id": f"late-{i}"}, received, timedelta(0))
            for i, e in enumerate(shopper_events(seed=505, start=base, minutes=4, count=120))
        ]
        late += [
            # Bridges late-merge's two sessions (1.5 min from each, the gap is 2).
            simple_event("merge-late", "late-merge", at(140), "add_to_cart")
            | {"product_id": "p-9"},
            # Moves late-move's session start 30 s earlier (a new session key).
            simple_event("move-late", "late-move", at(30)),
            # A visitor seen only late.
            simple_event("only-late", "late-only", at(100), "purchase") | {"revenue": 42.5},
        ]
        assert all(
            received - datetime.fromisoformat(e["event_time"]) >= timedelta(minutes=10)
            for e in late
        )
        sender.send(late)
        arrived = datetime.now(UTC)
        everything = on_time + late
        users |= {user_key(e) for e in late}
        want_windows = in_period(expected_windows(stitched_view(everything)), *period)
        assert want_windows != in_period(expected_windows(everything), *period)
        want_sessions = expected_sessions(everything, GAP)
        assert want_windows != in_period(expected_windows(on_time), *period)

        last: list[Any] = [None, None]

        def corrected() -> bool:
            last[0] = warehouse_windows(dsn, *period)
            last[1] = warehouse_sessions(dsn, users)
            return last[0] == want_windows and last[1] == want_sessions

        try:
            # A generous deadline, not the 10-minute objective: the time it took is printed
            # and recorded in docs/reliability.md (a shared machine can be very slow).
            wait_for(corrected, 1200, interval=5, what="the late events in the final aggregates")
        except AssertionError:
            details = {t: diff(want_windows[t], last[0][t]) for t in want_windows}
            log = stack.stack.config.logs_dir / "correction.log"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            raise AssertionError(
                f"windows: {details}; sessions: {diff(want_sessions, last[1])}\n"
                f"correction log:\n{tail}"
            ) from None
        took = datetime.now(UTC) - arrived
        print(f"late events corrected {took.total_seconds():.0f} s after they arrived")

    # The scheduled pass saw them, and says so.
    port = stack.stack.config.correction_metrics_port
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    late_seen = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("processor_correction_late_events_total{")
    )
    assert late_seen >= len(late)

    # Idempotent: the pass again, incremental and over the range, changes nothing.
    stack.stack.components["correction"].stop()
    settled = wait_for(
        lambda: correction_markers_loaded(dsn, stack), 120, what="corrections loaded"
    )
    before = (warehouse_windows(dsn, *period), warehouse_sessions(dsn, users))
    span = ("--from", period[0].isoformat(), "--to", period[1].isoformat())
    # The scheduled pass already ran again and again after the correction; by hand now, the
    # incremental pass once more, and the range twice (it rewrites every window and session).
    for args in ((), span, span):
        run_correction(stack, *args)
    wait_for(
        lambda: (n := correction_markers_loaded(dsn, stack)) is not None and n >= settled,
        120,
        what="the new correction markers to be loaded",
    )
    after = (warehouse_windows(dsn, *period), warehouse_sessions(dsn, users))
    assert after == before
    assert after == (want_windows, want_sessions)
    with psycopg.connect(dsn) as conn:
        [(events, distinct)] = conn.execute(
            "SELECT count(*), count(DISTINCT (source, event_id)) FROM analytics.events "
            "WHERE event_id NOT LIKE 'tick-%%'"
        ).fetchall()
    assert events == distinct == len(everything)
