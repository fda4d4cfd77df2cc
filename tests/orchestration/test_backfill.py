from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clickstream_common.schema import ClockPolicy
from orchestration.backfill import plan
from orchestration.settings import Settings

START = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
GAP = timedelta(minutes=30)


def test_the_raw_hours_read_follow_the_clock_policy() -> None:
    policy = ClockPolicy(max_ahead=timedelta(minutes=1), max_behind=timedelta(hours=2))
    now = datetime(2026, 11, 28, tzinfo=UTC)
    p = plan(
        START, START + timedelta(hours=2), ["event_counts_minute"], GAP, Settings(), now, policy
    )
    # Received from a minute before the range (clocks ahead) to two hours after it (behind),
    # plus the 5-minute windows that start in the range.
    assert p.raw_hours[0] == datetime(2026, 11, 20, 8, tzinfo=UTC)
    assert p.raw_hours[-1] == datetime(2026, 11, 20, 12, tzinfo=UTC)
    assert p.chunks == [
        (START, datetime(2026, 11, 20, 9, tzinfo=UTC)),
        (datetime(2026, 11, 20, 9, tzinfo=UTC), datetime(2026, 11, 20, 10, tzinfo=UTC)),
        (datetime(2026, 11, 20, 10, tzinfo=UTC), START + timedelta(hours=2)),
    ]


def test_sessions_read_a_gap_before_and_the_longest_session_after() -> None:
    policy = ClockPolicy(max_ahead=timedelta(0), max_behind=timedelta(0))
    now = datetime(2026, 11, 28, tzinfo=UTC)
    p = plan(START, START + timedelta(hours=1), ["sessions"], GAP, Settings(), now, policy)
    assert p.read_from == START - GAP
    assert p.read_to == START + timedelta(hours=1 + 24)


def test_nothing_past_now_is_read() -> None:
    now = START + timedelta(minutes=40)
    p = plan(START, START + timedelta(minutes=30), ["events"], GAP, Settings(), now)
    assert p.raw_hours[-1] == datetime(2026, 11, 20, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("datasets", "end"),
    [(["nope"], START + timedelta(hours=1)), ([], START + timedelta(hours=1)), (["events"], START)],
)
def test_bad_requests_are_refused(datasets: list[str], end: datetime) -> None:
    with pytest.raises(ValueError):
        plan(START, end, datasets, GAP, Settings(), START + timedelta(days=1))
