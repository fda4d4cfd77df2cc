"""Per-key token buckets."""

from ingest_api.ratelimit import RateLimiter


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
