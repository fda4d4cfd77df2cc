"""The supervisor on plain processes: detach, stop, stale and foreign PID files."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from clickstream_local.supervisor import (
    ReadinessError,
    Supervisor,
    descendants,
    group_members,
    proc_stat,
    wait_until,
)

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat.state != "Z"


def test_start_detaches_logs_and_stops(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    code = "print('hello', flush=True); import time; time.sleep(60)"
    pid = sup.start("sleeper", [sys.executable, "-c", code])
    assert sup.pid("sleeper") == pid
    stat = proc_stat(pid)
    assert stat is not None and stat.pgrp == pid and stat.session == pid
    assert json.loads(sup.pid_file("sleeper").read_text())["pid"] == pid
    wait_until(lambda: "hello" in sup.log_file("sleeper").read_text(), 10, "log")
    # Starting again is a no-op that returns the running pid.
    assert sup.start("sleeper", SLEEP) == pid
    assert sup.stop("sleeper", timeout=5)
    assert not alive(pid)
    assert not sup.pid_file("sleeper").exists()
    assert sup.stop("sleeper") is False


def test_stop_kills_the_whole_tree(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    # A child in the group, and a grandchild that leaves the group with setsid (as
    # PostgreSQL backends do).
    script = (
        "import os, subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "subprocess.Popen([sys.executable, '-c', 'import os, time; os.setsid(); time.sleep(60)'])\n"
        "time.sleep(60)\n"
    )
    pid = sup.start("tree", [sys.executable, "-c", script])
    wait_until(lambda: len(descendants(pid)) == 2, 10, "children")
    kids = [p.pid for p in descendants(pid)]
    # Leader + the child that stayed; the other child may not have called setsid yet.
    wait_until(lambda: len(group_members(pid)) == 2, 10, "the setsid child to leave the group")
    assert sup.stop("tree", timeout=5)
    wait_until(lambda: not any(alive(k) for k in kids), 5, "children gone")


def test_sigterm_ignored_escalates_to_sigkill(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('armed', flush=True); time.sleep(60)"
    )
    pid = sup.start("stubborn", [sys.executable, "-c", code])
    wait_until(lambda: "armed" in sup.log_file("stubborn").read_text(), 10, "armed")
    started = time.monotonic()
    assert sup.stop("stubborn", timeout=0.5)
    assert time.monotonic() - started < 5
    assert not alive(pid)


def test_foreign_pid_is_never_signalled(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    sup.run_dir.mkdir(parents=True)
    # Our own pid with a wrong start time stands for a recycled pid.
    record = {"pid": os.getpid(), "start_ticks": 1, "argv": ["x"]}
    sup.pid_file("ghost").write_text(json.dumps(record))
    assert sup.pid("ghost") is None
    assert not sup.pid_file("ghost").exists()
    sup.pid_file("ghost").write_text(json.dumps(record))
    assert sup.stop("ghost") is False  # and we are still alive to assert it
    assert not sup.pid_file("ghost").exists()


def test_stale_and_garbage_pid_files(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    pid = sup.start("short", [sys.executable, "-c", "pass"])
    wait_until(lambda: not sup.is_running("short"), 10, "exit")
    assert not sup.pid_file("short").exists()
    assert sup.exit_reason("short") is not None
    assert not alive(pid)
    sup.pid_file("junk").write_text("not json")
    assert sup.pid("junk") is None
    assert not sup.pid_file("junk").exists()


def test_wait_until_deadline_and_abort() -> None:
    with pytest.raises(ReadinessError, match="not ready after"):
        wait_until(lambda: False, 0.3, "never")
    with pytest.raises(ReadinessError, match="died"):
        wait_until(lambda: False, 30, "proc", abort=lambda: "died")


def test_restart_cleans_up_orphans_of_a_dead_leader(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    script = (
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('spawned', flush=True)\n"
    )
    leader = sup.start("leaky", [sys.executable, "-c", script])
    wait_until(lambda: "spawned" in sup.log_file("leaky").read_text(), 10, "spawned")
    wait_until(lambda: not alive(leader), 10, "leader exit")
    orphans = group_members(leader)
    assert len(orphans) == 1
    assert not sup.is_running("leaky")
    assert sup.pid_file("leaky").exists()  # kept: its group still has a member
    pid = sup.start("leaky", SLEEP)
    assert not any(alive(p) for p in orphans)
    assert sup.stop("leaky", timeout=5)
    assert not alive(pid)
