"""The worker count from the CPU limit, and readiness across workers."""

from pathlib import Path

import pytest

from ingest_api import workers
from ingest_api.workers import Shared, Worker, cgroup_cpu_limit, default_worker_count


def test_cgroup_v2_limit(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None


def test_cgroup_v1_limit(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path) == 4.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path) is None


def test_no_cgroup_files(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path) is None


@pytest.mark.parametrize(
    ("limit", "allowed", "expected"),
    [
        (None, 8, 8),  # no limit: every CPU the process may run on
        (2.0, 8, 2),
        (1.5, 8, 2),  # rounded up: the half CPU still serves
        (0.5, 8, 1),
        (16.0, 4, 4),  # never more than the CPUs it may run on
    ],
)
def test_default_worker_count(limit: float | None, allowed: int, expected: int) -> None:
    assert default_worker_count(limit, allowed) == expected


class Board:
    def __init__(self, count: int) -> None:
        self.shared = Shared(count, rate_table=None, board=[0.0] * count)


def test_ready_only_while_every_worker_stamps(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(workers.time, "monotonic", lambda: now[0])
    shared = Board(3).shared
    first, second, third = (Worker(i, shared) for i in range(3))
    assert first.not_ready() == [0, 1, 2]  # nobody has stamped yet
    for worker in (first, second, third):
        worker.stamp(True)
    assert second.not_ready() == []
    second.stamp(False)  # its producer lost Kafka
    assert first.not_ready() == [1]
    second.stamp(True)
    now[0] += workers.HEARTBEAT_STALE_SECONDS + 1
    third.stamp(True)  # the others stopped stamping: stuck or gone
    assert third.not_ready() == [0, 1]
