"""A small process supervisor: detached process groups, PID files, log files, safe stop.

Each process runs in a session of its own (pgid == sid == pid), so stopping it also stops the
children it forked (postgres backends, the Spark JVM of the stream processor). A PID file holds
the pid, its kernel start time and argv; a pid is only signalled while /proc shows that same
start time, so a recycled pid is never ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from clickstream_common import polling


class ReadinessError(RuntimeError):
    """A part did not become ready in time (or its process died while we waited)."""


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
    abort: Callable[[], str | None] | None = None,
) -> None:
    """Poll `condition` until true; `abort` returns a reason to give up early (process died)."""
    polling.wait_for(
        condition,
        timeout,
        what,
        interval=interval,
        max_interval=1.0,
        abort=abort,
        error=ReadinessError,
    )


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str
    pgrp: int
    session: int
    start_ticks: int


def terminate(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM a child started here, SIGKILL it if it has not exited within `timeout`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def proc_stat(pid: int) -> ProcStat | None:
    """Fields of /proc/<pid>/stat, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may hold spaces and parentheses; the rest follows the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return ProcStat(
        pid=pid, state=rest[0], pgrp=int(rest[2]), session=int(rest[3]), start_ticks=int(rest[19])
    )


def _alive(stat: ProcStat | None) -> bool:
    # A zombie has exited; PID 1 here may never reap it (a stopped postmaster lingers so).
    return stat is not None and stat.state not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None and stat.pgrp == pgid and _alive(stat):
                members.append(stat.pid)
    return members


def descendants(pid: int) -> list[ProcStat]:
    """Live descendants of `pid` (by parent links), whatever their process group."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(raw[raw.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[ProcStat] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        stat = proc_stat(child)
        if stat is not None and _alive(stat):
            found.append(stat)
        todo.extend(children.get(child, []))
    return found


def _same(proc: ProcStat) -> bool:
    """`proc` still runs (same pid, same start time, not a zombie)."""
    now = proc_stat(proc.pid)
    return now is not None and now.start_ticks == proc.start_ticks and _alive(now)


def _reap(pid: int) -> None:
    # Only our own children can be reaped; others are reaped (or not) by PID 1.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _primary_group(user: str) -> int:
    return pwd.getpwnam(user).pw_gid


@dataclass(frozen=True)
class PidRecord:
    pid: int
    start_ticks: int
    argv: list[str]


class Supervisor:
    """Starts and stops named processes; state in <state>/run/*.pid and <state>/logs/*.log."""

    def __init__(self, state_dir: Path) -> None:
        self.run_dir = state_dir / "run"
        self.logs_dir = state_dir / "logs"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def _read(self, name: str) -> PidRecord | None:
        try:
            data = json.loads(self.pid_file(name).read_text())
            return PidRecord(int(data["pid"]), int(data["start_ticks"]), list(data["argv"]))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def pid(self, name: str) -> int | None:
        """The pid of a running process of ours called `name`; clears a stale PID file."""
        record = self._read(name)
        if record is None:
            if self.pid_file(name).exists():
                self.pid_file(name).unlink(missing_ok=True)  # unreadable: stale
            return None
        stat = proc_stat(record.pid)
        if stat is not None and stat.start_ticks == record.start_ticks and _alive(stat):
            return record.pid
        # A live pid with another start time was recycled by someone else. Otherwise the
        # leader is dead (or a zombie); keep the file while its group has members, so that
        # stop() can still end them (the kernel does not reuse a pid that is a group's id).
        foreign = stat is not None and stat.start_ticks != record.start_ticks
        if foreign or not group_members(record.pid):
            self.pid_file(name).unlink(missing_ok=True)
        if not foreign:
            _reap(record.pid)
        return None

    def is_running(self, name: str) -> bool:
        return self.pid(name) is not None

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> int:
        """Start `argv` detached; returns its pid (the running one if already started).

        `user` runs it under that account (and its primary group) without a wrapper process,
        so the pid in the PID file is the program itself (PostgreSQL refuses to run as root).
        """
        running = self.pid(name)
        if running is not None:
            return running
        if self.pid_file(name).exists():
            # The leader died but members of its group live on (e.g. a Spark JVM): clean up.
            self.stop(name, timeout=5.0)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file(name), "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start {name}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                user=user,
                group=_primary_group(user) if user is not None else None,
                extra_groups=[] if user is not None else None,
                start_new_session=True,
                close_fds=True,
            )
        stat = proc_stat(proc.pid)
        start_ticks = stat.start_ticks if stat is not None else 0
        record = {"pid": proc.pid, "start_ticks": start_ticks, "argv": list(argv)}
        tmp = self.pid_file(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(record) + "\n")
        tmp.replace(self.pid_file(name))
        # Popen's handle is dropped on purpose: the process outlives this one; _reap covers
        # the case where the same Python process stops it again (tests).
        proc.returncode = 0  # keeps Popen.__del__ from warning that it is still running
        return proc.pid

    def exit_reason(self, name: str) -> str | None:
        """Why `name` is not running (for readiness errors), with the end of its log."""
        if self.is_running(name):
            return None
        return f"process exited; last log lines:\n{self.tail(name)}"

    def tail(self, name: str, lines: int = 15) -> str:
        try:
            text = self.log_file(name).read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, name: str, timeout: float = 20.0, sig: int = signal.SIGTERM) -> bool:
        """Signal the process group, wait up to `timeout`, then SIGKILL.

        Returns True if a process of ours was running; a stale PID file is just removed.
        """
        record = self._read(name)
        if record is None:
            self.pid_file(name).unlink(missing_ok=True)
            return False
        pgid = record.pid
        stat = proc_stat(pgid)
        if stat is not None and stat.start_ticks != record.start_ticks:
            # The pid was recycled by an unrelated process: leave it alone.
            self.pid_file(name).unlink(missing_ok=True)
            return False
        # The leader may be gone while its children live on; the kernel never hands out a pid
        # that is still some group's id, so members of group `pgid` are ours. Descendants that
        # left the group (PostgreSQL backends call setsid()) are tracked by pid + start time.
        strays = descendants(pgid) if stat is not None else []
        running = bool(group_members(pgid)) or any(_same(p) for p in strays)
        if running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)

            def gone() -> bool:
                _reap(pgid)
                return not group_members(pgid) and not any(_same(p) for p in strays)

            try:
                wait_until(gone, timeout, f"stop {name}", interval=0.05)
            except ReadinessError:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                for proc in strays:
                    if _same(proc):
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.kill(proc.pid, signal.SIGKILL)
                wait_until(gone, 10.0, f"kill {name}", interval=0.05)
        _reap(pgid)
        self.pid_file(name).unlink(missing_ok=True)
        return running
