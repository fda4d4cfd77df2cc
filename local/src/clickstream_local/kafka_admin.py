"""Kafka checks and topic creation through aiokafka's admin client."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from clickstream_local._async import run_sync

TOPIC_ALREADY_EXISTS = 36


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


async def _broker_count(bootstrap: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), timeout=3)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout=3)
        return len(cluster.get("brokers", []))
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def broker_ready(bootstrap: str, port: int) -> bool:
    """The broker accepts connections and reports itself in the cluster metadata."""
    if not port_open(port):
        return False
    try:
        return run_sync(_broker_count(bootstrap)) > 0
    except Exception:  # any client error means "not yet"
        return False


async def _ensure_topics(bootstrap: str, topics: Mapping[str, int]) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        result = {name: "exists" for name in topics if name in existing}
        missing = [NewTopic(n, p, 1) for n, p in topics.items() if n not in existing]
        if missing:
            response = await admin.create_topics(missing, timeout_ms=10000)
            for name, code, *rest in response.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    message = rest[0] if rest else ""
                    raise RuntimeError(f"create topic {name}: error {code} {message}")
                result[name] = "created" if code == 0 else "exists"
        # Topics created by hand (or auto-created) with other counts break the contract.
        for meta in await admin.describe_topics(list(topics)):
            name, count = meta["topic"], len(meta["partitions"])
            if count and count != topics[name]:
                result[name] = f"exists with {count} partitions (contract: {topics[name]})"
        return result
    finally:
        await admin.close()


def ensure_topics(bootstrap: str, topics: Mapping[str, int]) -> dict[str, str]:
    """Create missing topics (replication factor 1); returns name -> created/exists."""
    return run_sync(_ensure_topics(bootstrap, topics))
