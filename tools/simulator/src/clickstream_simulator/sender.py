"""Delivery of generated events: batches over HTTP to the ingest API, or straight to Kafka."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from clickstream_common.schema import EnrichedEvent, Event


@dataclass
class DeliveryStats:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    retries: int = 0
    started: float = field(default_factory=time.monotonic)
    accepted_events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.accepted / elapsed if elapsed > 0 else 0.0


def batched(events: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for event in events:
        batch.append(event)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class HttpSender:
    """Posts batches to `POST /v1/events`; retries 429/503 and network errors with backoff.

    Event ids stay the same across retries, so the pipeline can drop the duplicates a retry
    may create (the request may have reached Kafka before the connection broke).
    """

    def __init__(
        self, base_url: str, write_key: str, timeout: float = 10.0, max_attempts: int = 8
    ) -> None:
        self.client = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {write_key}"},
            timeout=timeout,
        )
        self.max_attempts = max_attempts

    def close(self) -> None:
        self.client.close()

    def send(self, batch: list[dict[str, Any]], stats: DeliveryStats) -> None:
        delay = 0.2
        for attempt in range(1, self.max_attempts + 1):
            body = orjson.dumps({"sent_at": datetime.now(UTC).isoformat(), "events": batch})
            try:
                response = self.client.post(
                    "/v1/events", content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code < 300:
                rejected = {r["index"] for r in response.json().get("rejected", [])}
                stats.sent += len(batch)
                stats.rejected += len(rejected)
                accepted = [e for i, e in enumerate(batch) if i not in rejected]
                stats.accepted += len(accepted)
                stats.accepted_events.extend(accepted)
                return
            if response is not None and response.status_code not in (429, 502, 503, 504):
                raise RuntimeError(
                    f"ingest API answered {response.status_code}: {response.text[:500]}"
                )
            if attempt == self.max_attempts:
                break
            stats.retries += 1
            retry_after = response.headers.get("Retry-After") if response is not None else None
            time.sleep(float(retry_after) if retry_after else delay)
            delay = min(delay * 2, 5.0)
        raise RuntimeError(f"batch not accepted after {self.max_attempts} attempts")


def as_enriched(event: dict[str, Any], source: str = "simulator") -> EnrichedEvent:
    """What the collector would publish for an event sent straight to Kafka (no skew known)."""
    parsed = Event.model_validate(event)
    now = datetime.now(UTC)
    return EnrichedEvent.model_validate(
        {
            **parsed.model_dump(),
            "source": source,
            "received_at": now,
            "event_time": parsed.timestamp,
        }
    )


async def send_to_kafka(
    events: Iterable[dict[str, Any]],
    bootstrap_servers: str,
    topic: str,
    stats: DeliveryStats,
    on_progress: Callable[[DeliveryStats], None] | None = None,
) -> None:
    """Direct mode: publish enriched events to the events topic (acks=all, idempotent)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        for batch in batched(events, 500):
            futures = []
            for event in batch:
                enriched = as_enriched(event)
                futures.append(
                    await producer.send(
                        topic,
                        orjson.dumps(enriched.model_dump(mode="json")),
                        key=enriched.user_key.encode(),
                    )
                )
            for future in futures:
                await future
            stats.sent += len(batch)
            stats.accepted += len(batch)
            stats.accepted_events.extend(batch)
            if on_progress:
                on_progress(stats)
    finally:
        await producer.stop()
