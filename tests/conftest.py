"""Fixtures for cross-service tests: one real local stack per test session.

The stack runs on free ports in its own state directory, so the suite can run beside a
`make up`; it reuses the downloads that `local/bootstrap.sh` cached.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from clickstream_local.config import StackConfig, default_state_dir
from clickstream_local.stack import ConnectionInfo, Stack

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | None], timeout: float, interval: float = 0.5, what: str = ""
) -> T:
    """Poll `condition` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


@dataclass
class RunningStack:
    stack: Stack
    info: ConnectionInfo

    @property
    def prometheus_url(self) -> str:
        return self.info.prometheus_url


@pytest.fixture(scope="session")
def running_stack() -> Iterator[RunningStack]:
    """The platform and the three services, started once per session, stopped at the end."""
    main_state = default_state_dir()
    # Under the project's state dir: PostgreSQL (run as `postgres`) must reach its data dir.
    state = main_state / "test-stacks" / f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    config = StackConfig.ephemeral(
        state, cache_dir=main_state / "cache", bin_dir=main_state / "bin"
    )
    stack = Stack(config, progress=lambda line: print(line, flush=True))
    try:
        stack.start(platform=True, services=True)
        yield RunningStack(stack, stack.connection_info())
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)
