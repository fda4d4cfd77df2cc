"""run_until_stopped: a signal asks the service to stop; the probe server stops last."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import Any, cast

from clickstream_common.probes import ProbeServer, run_until_stopped


class FakeProbe:
    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_sigterm_stops_the_service_then_the_probe() -> None:
    stopping = threading.Event()
    probe = FakeProbe()
    seen: list[str] = []

    async def main() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        # The service's own loop waits on its threading.Event the same way (off the loop).
        assert await asyncio.to_thread(stopping.wait, 30)
        seen.append(f"stopped, probe stopped: {probe.stopped}")

    run_until_stopped(main, stopping.set, cast(ProbeServer, cast(Any, probe)))
    assert seen == ["stopped, probe stopped: False"]
    assert probe.stopped
