"""Per-write-key rate limits: a token bucket of events per second (in each replica)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Bucket:
    rate: float  # tokens (events) added per second
    capacity: float
    tokens: float
    updated: float

    def take(self, cost: int, now: float) -> float:
        """Take `cost` tokens; 0.0 if allowed, else the seconds until it would be."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        # A request larger than the whole bucket passes when the bucket is full and leaves
        # it in debt, so big batches are slowed, not refused forever.
        needed = min(float(cost), self.capacity)
        if self.tokens >= needed:
            self.tokens -= cost
            return 0.0
        return (needed - self.tokens) / self.rate


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.buckets: dict[str, Bucket] = {}

    def retry_after(self, key_id: str, rate: float, burst: int, cost: int) -> int:
        """0 when `cost` events may pass now, else whole seconds to wait (Retry-After)."""
        if rate <= 0:
            return 0
        now = self.clock()
        bucket = self.buckets.get(key_id)
        capacity = float(max(burst, 1))
        if bucket is None or bucket.rate != rate or bucket.capacity != capacity:
            bucket = Bucket(rate, capacity, capacity, now)
            self.buckets[key_id] = bucket
        wait = bucket.take(cost, now)
        return 0 if wait == 0 else max(1, math.ceil(wait))
