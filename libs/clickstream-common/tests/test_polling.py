"""The one polling loop: returns the condition's value, grows its pauses, names what failed."""

from __future__ import annotations

import pytest

from clickstream_common.polling import wait_for


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def test_returns_the_first_truthy_value() -> None:
    t = FakeTime()
    answers = iter([None, 0, "ready"])
    assert wait_for(lambda: next(answers), 10, "x", sleep=t.sleep, clock=t.clock) == "ready"
    assert t.pauses == [0.5, 0.5]


def test_pauses_grow_up_to_the_maximum_and_the_deadline_raises_the_given_error() -> None:
    t = FakeTime()
    with pytest.raises(AssertionError, match=r"the thing: not ready after 5s \(last: False\)"):
        wait_for(
            lambda: False,
            5,
            "the thing",
            interval=1.0,
            max_interval=2.0,
            error=AssertionError,
            sleep=t.sleep,
            clock=t.clock,
        )
    assert t.pauses == [1.0, 1.5, 2.0, 2.0]


def test_abort_gives_up_early_with_its_reason() -> None:
    t = FakeTime()
    with pytest.raises(TimeoutError, match="kafka: exited with 1"):
        wait_for(
            lambda: False,
            60,
            "kafka",
            abort=lambda: "exited with 1" if t.now >= 1 else None,
            sleep=t.sleep,
            clock=t.clock,
        )
    assert t.now == 1.0
