"""Waiting for the loader: a job that wrote commit markers is done when the warehouse has them."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from orchestration import warehouse


class NotLoaded(RuntimeError):
    """Markers the loader has not loaded in time, or has quarantined."""


def wait_until_loaded(
    conn: Any,
    markers: Sequence[str],
    timeout: float,
    interval: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Poll the load ledger until every marker is loaded; raise if one is quarantined or the
    deadline passes (the markers stay in the lake: the loader or the catch-up load gets them
    later, and the next run of the job checks again)."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = warehouse.marker_statuses(conn, markers)
        quarantined = sorted(k for k, s in statuses.items() if s == warehouse.QUARANTINED)
        if quarantined:
            raise NotLoaded(f"quarantined by the loader: {quarantined[:5]}")
        waiting = sorted(set(markers) - set(statuses))
        if not waiting:
            return statuses
        if time.monotonic() >= deadline:
            raise NotLoaded(
                f"{len(waiting)} marker(s) not loaded after {timeout:.0f}s: {waiting[:5]}"
            )
        sleep(interval)
