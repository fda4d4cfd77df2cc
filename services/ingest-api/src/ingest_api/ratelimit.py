"""Per-write-key rate limits: a token bucket of events per second, in each replica (pod),
shared by the replica's worker processes."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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


class SharedRateLimiter:
    """The same buckets, kept in shared memory so every worker process of a pod draws on one
    bucket per write key: the limit holds per pod whatever worker a connection lands on.

    `table` is a `multiprocessing.Array("d", slots * FIELDS)` made by the supervising process
    (ingest_api.workers) and inherited by the workers; its lock serialises the few floating-
    point operations of a take. A slot holds a key's hash (open addressing, linear probing)
    and its bucket. Write keys are fixed by the settings, so the table is sized to hold them
    all; a key that finds it full gets a bucket in this process alone, with the limit split
    by the number of workers, so it stays within its limit either way.
    """

    FIELDS = 5  # key hash, rate, capacity, tokens, updated

    def __init__(
        self, table: Any, workers: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.table = table
        self.slots = len(table) // self.FIELDS
        self.workers = max(1, workers)
        self.clock = clock
        self.overflow = RateLimiter(clock)

    @staticmethod
    def key_hash(key_id: str) -> float:
        # 52 bits: exact in a double; never 0, which marks a free slot.
        digest = hashlib.blake2b(key_id.encode(), digest_size=8).digest()
        return float((int.from_bytes(digest, "big") & ((1 << 52) - 1)) or 1)

    def retry_after(self, key_id: str, rate: float, burst: int, cost: int) -> int:
        """0 when `cost` events may pass now, else whole seconds to wait (Retry-After)."""
        if rate <= 0:
            return 0
        wanted = self.key_hash(key_id)
        capacity = float(max(burst, 1))
        start = int(wanted) % self.slots
        with self.table.get_lock():
            now = self.clock()
            values = self.table.get_obj()
            for probe in range(self.slots):
                base = ((start + probe) % self.slots) * self.FIELDS
                held = values[base]
                if held not in (0.0, wanted):
                    continue
                if held == 0.0 or values[base + 1] != rate or values[base + 2] != capacity:
                    values[base : base + self.FIELDS] = [wanted, rate, capacity, capacity, now]
                bucket = Bucket(rate, capacity, values[base + 3], values[base + 4])
                wait = bucket.take(cost, now)
                values[base + 3] = bucket.tokens
                values[base + 4] = bucket.updated
                return 0 if wait == 0 else max(1, math.ceil(wait))
        split_burst = max(1, math.ceil(burst / self.workers))
        return self.overflow.retry_after(key_id, rate / self.workers, split_burst, cost)
