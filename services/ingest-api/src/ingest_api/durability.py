"""What a 2xx means: the topics' replication, checked at start-up.

The producer sends with acks=all, so the broker acknowledges once every *in-sync* replica
holds the records. How durable that is depends on the topic, not on the producer: with
replication factor 1, or with `min.insync.replicas=1` (the in-sync set may shrink to the
leader alone), one lost disk loses acknowledged events. The documented guarantee
(docs/ingest-api.md) is replication factor >= INGEST_DURABLE_MIN_REPLICATION_FACTOR and
`min.insync.replicas` >= INGEST_DURABLE_MIN_INSYNC_REPLICAS on the events and dead-letter
topics. `check_topics` reads both settings from the cluster; the server logs a structured
warning for each shortfall, or refuses to start (INGEST_REQUIRE_DURABLE_TOPIC).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

log = logging.getLogger(__name__)

MIN_INSYNC = "min.insync.replicas"


@dataclass(frozen=True)
class TopicDurability:
    topic: str
    replication_factor: int  # the fewest replicas of any of its partitions
    min_insync_replicas: int


@dataclass(frozen=True)
class Shortfall:
    topic: str
    setting: str
    actual: int
    required: int
    consequence: str

    def message(self) -> str:
        return (
            f"topic {self.topic}: {self.setting}={self.actual}, documented minimum "
            f"{self.required}: {self.consequence}"
        )


def shortfalls(
    found: TopicDurability, min_replication_factor: int, min_insync_replicas: int
) -> list[Shortfall]:
    """Where acks=all on this topic is weaker than documented (or cannot succeed at all)."""
    out: list[Shortfall] = []
    if found.replication_factor < min_replication_factor:
        out.append(
            Shortfall(
                found.topic,
                "replication.factor",
                found.replication_factor,
                min_replication_factor,
                f"losing {found.replication_factor} broker(s) can lose acknowledged events",
            )
        )
    if found.min_insync_replicas < min_insync_replicas:
        out.append(
            Shortfall(
                found.topic,
                MIN_INSYNC,
                found.min_insync_replicas,
                min_insync_replicas,
                f"acks=all is answered once {found.min_insync_replicas} replica(s) hold an "
                "event, so losing that many disks can lose it",
            )
        )
    if found.min_insync_replicas > found.replication_factor:
        out.append(
            Shortfall(
                found.topic,
                MIN_INSYNC,
                found.min_insync_replicas,
                found.replication_factor,
                "more than the replicas that exist: every acks=all send is refused",
            )
        )
    return out


def _config_values(responses: Sequence[Any]) -> dict[str, dict[str, str]]:
    """topic -> {config name: value} from DescribeConfigs responses of any version."""
    values: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            if resource["error_code"]:
                raise RuntimeError(
                    f"describe configs of {resource['resource_name']}: error "
                    f"{resource['error_code']} {resource['error_message']}"
                )
            values[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"] for entry in resource["config_entries"]
            }
    return values


async def describe_topics(
    bootstrap_servers: str,
    topics: Sequence[str],
    timeout_seconds: float,
    client_options: Mapping[str, Any] | None = None,
) -> list[TopicDurability]:
    """Each topic's replication factor and min.insync.replicas, as the cluster reports them."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=max(1000, int(timeout_seconds * 1000)),
        client_id="ingest-api-durability-check",
        **dict(client_options or {}),
    )
    try:
        async with asyncio.timeout(timeout_seconds):
            await admin.start()
            described = await admin.describe_topics(list(topics))
            configs = _config_values(
                await admin.describe_configs(
                    [
                        ConfigResource(ConfigResourceType.TOPIC, name, {MIN_INSYNC: None})
                        for name in topics
                    ]
                )
            )
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    found: list[TopicDurability] = []
    for meta in described:
        name = meta["topic"]
        if meta["error_code"] or not meta["partitions"]:
            raise RuntimeError(f"describe topic {name}: error {meta['error_code']}")
        replicas = min(len(partition["replicas"]) for partition in meta["partitions"])
        found.append(TopicDurability(name, replicas, int(configs[name][MIN_INSYNC])))
    return found


class NotDurable(SystemExit):
    """The topics are weaker than documented and INGEST_REQUIRE_DURABLE_TOPIC is set."""


async def check_topics(
    bootstrap_servers: str,
    topics: Sequence[str],
    *,
    min_replication_factor: int,
    min_insync_replicas: int,
    require: bool,
    timeout_seconds: float,
    client_options: Mapping[str, Any] | None = None,
) -> list[Shortfall]:
    """Log each shortfall as a structured warning and return them; raise NotDurable when
    `require` is set and there is any, or the cluster cannot be asked (an unverified
    guarantee is not one). Without `require`, an unreachable cluster is a warning too: the
    collector then starts not ready, as it always has while Kafka is away."""
    try:
        found = await describe_topics(bootstrap_servers, topics, timeout_seconds, client_options)
    except Exception as exc:  # any client or protocol error: the check could not run
        log.warning(
            "topic durability not checked",
            extra={"event": "durability_unchecked", "topics": list(topics), "error": repr(exc)},
        )
        if require:
            raise NotDurable(
                f"INGEST_REQUIRE_DURABLE_TOPIC is set and the topics' durability could not be "
                f"read: {exc!r}"
            ) from exc
        return []
    weak = [
        shortfall
        for topic in found
        for shortfall in shortfalls(topic, min_replication_factor, min_insync_replicas)
    ]
    for shortfall in weak:
        log.warning(
            "acks=all is weaker than documented",
            extra={
                "event": "durability_shortfall",
                "topic": shortfall.topic,
                "setting": shortfall.setting,
                "actual": shortfall.actual,
                "required": shortfall.required,
                "detail": shortfall.message(),
                "refusing": require,
            },
        )
    if weak and require:
        raise NotDurable(
            "INGEST_REQUIRE_DURABLE_TOPIC is set and "
            + "; ".join(shortfall.message() for shortfall in weak)
        )
    if not weak:
        log.info(
            "topic durability as documented",
            extra={
                "event": "durability_ok",
                "topics": {t.topic: [t.replication_factor, t.min_insync_replicas] for t in found},
            },
        )
    return weak
