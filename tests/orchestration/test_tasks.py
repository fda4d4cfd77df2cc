from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from orchestration import loading, metrics
from orchestration.quality import CheckResult, Status
from orchestration.tasks import checked_hour, compacted_day


def test_the_checked_hour_is_the_previous_closed_one() -> None:
    run = datetime(2026, 11, 28, 10, 20, tzinfo=UTC)
    assert checked_hour(run, {}) == datetime(2026, 11, 28, 9, tzinfo=UTC)
    assert checked_hour(run, {"hour": "2026-11-27T05:40:00"}) == datetime(
        2026, 11, 27, 5, tzinfo=UTC
    )
    assert compacted_day(run, None) == date(2026, 11, 27)
    assert compacted_day(run, {"day": "2026-11-01"}) == date(2026, 11, 1)


class Ledger:
    """The load ledger as marker_statuses reads it: rows appear over time."""

    def __init__(self, rounds: list[list[tuple[str, str]]]) -> None:
        self.rounds = rounds

    def execute(self, statement: str, params: Any) -> Ledger:
        self.rows = self.rounds.pop(0) if len(self.rounds) > 1 else self.rounds[0]
        return self

    def fetchall(self) -> list[tuple[str, str]]:
        return self.rows


def test_waiting_for_the_loader_ends_when_every_marker_is_in() -> None:
    ledger = Ledger([[], [("m1", "loaded")], [("m1", "loaded"), ("m2", "loaded")]])
    slept: list[float] = []
    statuses = loading.wait_until_loaded(ledger, ["m1", "m2"], 60, sleep=slept.append)
    assert statuses == {"m1": "loaded", "m2": "loaded"} and len(slept) == 2


def test_a_quarantined_marker_or_the_deadline_fails_the_wait() -> None:
    with pytest.raises(loading.NotLoaded, match="quarantined"):
        loading.wait_until_loaded(Ledger([[("m1", "quarantined")]]), ["m1"], 60)
    with pytest.raises(loading.NotLoaded, match="not loaded after 0s"):
        loading.wait_until_loaded(Ledger([[]]), ["m1"], 0, sleep=lambda s: None)


def test_quality_samples() -> None:
    hour = datetime(2026, 11, 28, 9, tzinfo=UTC)
    results = [
        CheckResult("event_counts", "events", hour, 10, 9, Status.FAILED),
        CheckResult("freshness", "web", hour, 900, None, Status.ERROR),
    ]
    samples = metrics.quality_samples(results, hour, hour)
    failed = {s.labels: s.value for s in samples if s.name == "clickstream_dq_check_failed"}
    assert failed == {
        (("check", "event_counts"), ("subject", "events")): 1.0,
        (("check", "freshness"), ("subject", "web")): 1.0,
    }
    observed = [s for s in samples if s.name == "clickstream_dq_check_observed"]
    assert [s.value for s in observed] == [9.0]  # no sample for a figure that is unknown
