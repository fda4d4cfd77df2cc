"""Run a coroutine to completion from sync code, even when the caller has a running loop.

The Stack API is synchronous, but pytest-asyncio fixtures may call it from inside an event
loop, where asyncio.run() is refused; a private thread with its own loop works in both cases.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickstream-local") as pool:
        return pool.submit(asyncio.run, coro).result()
