"""Every core of a pod: N worker processes on one port, supervised by the first process.

One uvicorn process runs one event loop on one core. With INGEST_WORKERS > 1 (or 0 on a
machine or pod with several CPUs) the process started as `python -m ingest_api` becomes a
supervisor: it starts the workers (each a uvicorn server with its own Kafka producer,
listening on the same port with SO_REUSEPORT, so the kernel spreads connections across them),
restarts any that exits, and stops them all on SIGTERM/SIGINT. What must hold per pod rather
than per process is shared:

- metrics: prometheus-client's multiprocess mode. Each worker writes its values to files in
  PROMETHEUS_MULTIPROC_DIR (INGEST_METRICS_DIR or a fresh temporary directory, emptied at
  start); /metrics, answered by any worker, sums them.
- rate limits: one token bucket per write key in shared memory (ratelimit.SharedRateLimiter).
- readiness: each worker stamps its slot of a shared board every second while its producer is
  ready; /readyz, answered by any worker, is 200 only while every worker's stamp is fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingest_api.config import Settings
    from ingest_api.publisher import Publisher

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0
# A worker whose stamp is older than this is stuck or gone: the pod is not ready.
HEARTBEAT_STALE_SECONDS = 5.0
RATE_SLOTS_PER_KEY = 4  # a sparse table: short probe sequences
# A worker that exits this soon after starting, this many times in a row, fails the pod
# (port taken, bad settings): restarting it forever would hide the cause.
QUICK_EXIT_SECONDS = 10.0
QUICK_EXITS_TOLERATED = 5
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The container's CPU limit in CPUs (cgroup v2 `cpu.max`, else v1 CFS quota); None
    when there is none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


def default_worker_count(limit: float | None = None, allowed: int | None = None) -> int:
    """One worker per CPU the process may use: the CPU limit rounded up (a limit of 1.5 CPUs
    still gains from a second worker), at most the CPUs it may run on."""
    if allowed is None:
        allowed = len(os.sched_getaffinity(0))
    if limit is None:
        limit = cgroup_cpu_limit()
    if limit is None:
        return max(1, allowed)
    return max(1, min(allowed, math.ceil(limit)))


def worker_count(settings: Settings) -> int:
    return settings.ingest_workers or default_worker_count()


@dataclass
class Shared:
    """What the workers share; made by the supervisor, inherited by the workers at spawn."""

    count: int
    rate_table: Any  # multiprocessing.Array("d"): ratelimit.SharedRateLimiter
    board: Any  # multiprocessing.Array("d", count): each worker's last ready stamp

    @classmethod
    def create(cls, count: int, write_keys: int, context: Any) -> Shared:
        from ingest_api.ratelimit import SharedRateLimiter

        slots = max(64, RATE_SLOTS_PER_KEY * write_keys)
        return cls(
            count,
            context.Array("d", slots * SharedRateLimiter.FIELDS, lock=True),
            context.Array("d", count, lock=False),
        )


@dataclass
class Worker:
    """This process's place among the workers (None on the single-process path)."""

    index: int
    shared: Shared

    def stamp(self, ready: bool) -> None:
        self.shared.board[self.index] = time.monotonic() if ready else 0.0

    def not_ready(self, now: float | None = None) -> list[int]:
        """Indexes of the workers whose producer is not ready or that stopped stamping."""
        now = time.monotonic() if now is None else now
        return [
            index
            for index, stamp in enumerate(self.shared.board)
            if stamp <= 0.0 or now - stamp > HEARTBEAT_STALE_SECONDS
        ]

    async def heartbeat(self, publisher: Publisher) -> None:
        try:
            while True:
                self.stamp(publisher.ready)
                await asyncio.sleep(HEARTBEAT_SECONDS)
        finally:
            self.stamp(False)


def prepare_metrics_dir(settings: Settings) -> Path:
    """An empty directory for the workers' metrics files, named in the environment the
    workers inherit (prometheus-client reads it when they import it)."""
    if settings.ingest_metrics_dir:
        path = Path(settings.ingest_metrics_dir)
        shutil.rmtree(path, ignore_errors=True)  # files of an earlier run would be summed
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="ingest-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def listening_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """This worker's own socket on the shared port; SO_REUSEPORT lets the kernel hand each
    new connection to one of the workers' sockets."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def serve_worker(index: int, shared: Shared) -> None:
    """A worker process's entry point (spawned by `supervise`)."""
    from ingest_api.main import serve

    serve(Worker(index, shared))


class Supervisor:
    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        self.context = multiprocessing.get_context("spawn")
        self.shared = Shared.create(count, len(settings.ingest_write_keys), self.context)
        self.processes: list[BaseProcess | None] = [None] * count
        self.started_at = [0.0] * count
        self.quick_exits = [0] * count
        self.stopping = False
        self.metrics_dir = prepare_metrics_dir(settings)

    def start_worker(self, index: int) -> None:
        process = self.context.Process(
            target=serve_worker,
            args=(index, self.shared),
            name=f"ingest-api-worker-{index}",
        )
        process.start()
        self.processes[index] = process
        self.started_at[index] = time.monotonic()
        log.info("worker started", extra={"worker": index, "pid": process.pid})

    def reap(self) -> None:
        """Replace workers that exited (their metrics files stay: counters keep counting;
        their live gauges are dropped)."""
        from prometheus_client import multiprocess

        for index, process in enumerate(self.processes):
            if process is None or process.is_alive() or self.stopping:
                continue
            log.warning(
                "worker exited; restarting it",
                extra={"worker": index, "pid": process.pid, "exitcode": process.exitcode},
            )
            self.shared.board[index] = 0.0
            if process.pid is not None:
                multiprocess.mark_process_dead(process.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
            quick = time.monotonic() - self.started_at[index] < QUICK_EXIT_SECONDS
            self.quick_exits[index] = self.quick_exits[index] + 1 if quick else 0
            if self.quick_exits[index] >= QUICK_EXITS_TOLERATED:
                raise SystemExit(
                    f"worker {index} exited {QUICK_EXITS_TOLERATED} times within "
                    f"{QUICK_EXIT_SECONDS:g} s of starting (exit code {process.exitcode})"
                )
            self.start_worker(index)

    def stop(self, timeout: float = 30.0) -> None:
        self.stopping = True
        running = [p for p in self.processes if p is not None and p.is_alive()]
        for process in running:
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)  # each worker shuts down gracefully
        deadline = time.monotonic() + timeout
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()

    def run(self) -> None:
        log.info(
            "starting workers",
            extra={"workers": self.count, "metrics_dir": str(self.metrics_dir)},
        )
        stop_requested = False

        def request_stop(signum: int, _frame: Any) -> None:
            nonlocal stop_requested
            stop_requested = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        try:
            for index in range(self.count):
                self.start_worker(index)
            while not stop_requested:
                time.sleep(0.5)
                if not stop_requested:  # workers also get a terminal's SIGINT
                    self.reap()
        finally:
            self.stop()
            if not self.settings.ingest_metrics_dir:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)
        log.info("workers stopped")
