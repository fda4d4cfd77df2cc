"""Per-key token buckets, in one process and shared by worker processes."""

import multiprocessing
from typing import Any

from ingest_api.ratelimit import RateLimiter, SharedRateLimiter


def test_rate_limit_refills_and_names_the_wait() -> None:
    now = [100.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert limiter.retry_after("k", rate=10, burst=20, cost=15) == 0
    assert limiter.retry_after("k", rate=10, burst=20, cost=10) == 1  # 5 left, 5 missing
    now[0] += 0.5
    assert limiter.retry_after("k", rate=10, burst=20, cost=10) == 0
    assert limiter.retry_after("other", rate=10, burst=20, cost=20) == 0  # keys are separate
    assert limiter.retry_after("k", rate=0, burst=0, cost=10**6) == 0  # 0 = unlimited


def test_a_batch_larger_than_the_burst_passes_a_full_bucket_and_leaves_debt() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert limiter.retry_after("k", rate=10, burst=10, cost=50) == 0
    assert limiter.retry_after("k", rate=10, burst=10, cost=1) == 5  # 40 in debt, then 1


def shared_table(slots: int = 64) -> Any:
    return multiprocessing.get_context("spawn").Array("d", slots * SharedRateLimiter.FIELDS)


def test_the_shared_bucket_behaves_as_the_local_one() -> None:
    now = [100.0]
    limiter = SharedRateLimiter(shared_table(), workers=2, clock=lambda: now[0])
    assert limiter.retry_after("k", rate=10, burst=20, cost=15) == 0
    assert limiter.retry_after("k", rate=10, burst=20, cost=10) == 1
    now[0] += 0.5
    assert limiter.retry_after("k", rate=10, burst=20, cost=10) == 0
    assert limiter.retry_after("other", rate=10, burst=20, cost=20) == 0
    assert limiter.retry_after("k", rate=0, burst=0, cost=10**6) == 0
    assert limiter.retry_after("big", rate=10, burst=10, cost=50) == 0
    assert limiter.retry_after("big", rate=10, burst=10, cost=1) == 5


def test_workers_sharing_a_table_draw_on_one_bucket_per_key() -> None:
    now = [0.0]
    table = shared_table()
    first, second = (SharedRateLimiter(table, workers=2, clock=lambda: now[0]) for _ in "ab")
    assert first.retry_after("k", rate=1, burst=5, cost=3) == 0
    assert second.retry_after("k", rate=1, burst=5, cost=2) == 0
    # Five taken in all: a bucket per worker would still hold three in the second.
    assert second.retry_after("k", rate=1, burst=5, cost=1) == 1
    assert first.retry_after("k", rate=1, burst=5, cost=1) == 1
    now[0] += 1.0
    assert second.retry_after("k", rate=1, burst=5, cost=1) == 0


def test_a_full_table_falls_back_to_a_split_local_bucket() -> None:
    now = [0.0]
    limiter = SharedRateLimiter(shared_table(slots=1), workers=2, clock=lambda: now[0])
    assert limiter.retry_after("first", rate=10, burst=10, cost=10) == 0  # takes the slot
    # "second" finds no slot: this worker may pass half its rate and burst.
    assert limiter.retry_after("second", rate=10, burst=10, cost=5) == 0
    assert limiter.retry_after("second", rate=10, burst=10, cost=1) == 1


def test_workers_in_other_processes_draw_on_the_same_bucket() -> None:
    # Forked: the worker function lives in this test module, which a spawned child cannot
    # import; the served workers are spawned (tests/ingest/test_workers.py).
    context = multiprocessing.get_context("fork")
    table = shared_table()
    workers = [context.Process(target=take_five, args=(table,)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    # Ten events taken in two processes from a bucket of burst 10 that refills 1 per hour.
    limiter = SharedRateLimiter(table, workers=2)
    assert limiter.retry_after("k", rate=1 / 3600, burst=10, cost=1) > 0


def take_five(table: Any) -> None:
    limiter = SharedRateLimiter(table, workers=2)
    for _ in range(5):
        assert limiter.retry_after("k", rate=1 / 3600, burst=10, cost=1) == 0
