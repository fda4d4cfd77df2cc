"""Waiting on a condition with a deadline: the one polling loop of the project.

The local platform waits for its parts to become ready, and the tests wait for results to
appear; both poll a condition until it holds or a deadline passes, never sleep a fixed time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | None],
    timeout: float,
    what: str = "",
    *,
    interval: float = 0.5,
    max_interval: float | None = None,
    abort: Callable[[], str | None] | None = None,
    error: type[Exception] = TimeoutError,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call `condition` until it returns something truthy, and return that.

    `interval` is the first pause; with `max_interval` each pause grows by half up to it.
    `abort` returns a reason to give up early (a process died). Both giving up and the
    deadline raise `error` (AssertionError in tests), naming `what` and the last result.
    """
    deadline = clock() + timeout
    delay = interval
    while True:
        last = condition()
        if last:
            return last
        if abort is not None and (reason := abort()) is not None:
            raise error(f"{what}: {reason}")
        if clock() >= deadline:
            raise error(f"{what}: not ready after {timeout:g}s (last: {last!r})")
        sleep(delay)
        if max_interval is not None:
            delay = min(delay * 1.5, max_interval)
