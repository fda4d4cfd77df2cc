"""The request-independent part of collecting: limits, rate limits, enrichment, publishing."""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from fastapi import Request

from ingest_api import metrics
from ingest_api.auth import Client
from ingest_api.config import Settings
from ingest_api.enrichment import RequestFacts, client_address, parse_networks, truncate_ip
from ingest_api.errors import ApiError
from ingest_api.intake import (
    Candidate,
    Limits,
    Outcome,
    check_media_type,
    metric_event_type,
    process,
    read_limited,
)
from ingest_api.middleware import REQUEST_ID
from ingest_api.publisher import KafkaPublisher, PublishError
from ingest_api.ratelimit import RateLimiter

log = logging.getLogger(__name__)


class Collector:
    def __init__(self, settings: Settings, publisher: KafkaPublisher) -> None:
        self.settings = settings
        self.publisher = publisher
        self.limiter = RateLimiter()
        self.trusted = parse_networks(settings.ingest_trusted_proxies)
        self.limits = Limits(
            max_events=settings.ingest_max_events_per_request,
            max_request_bytes=settings.ingest_max_request_bytes,
            max_event_bytes=settings.ingest_max_event_bytes,
            max_properties_bytes=settings.ingest_max_properties_bytes,
        )
        self.tolerance = timedelta(seconds=settings.ingest_skew_tolerance_seconds)
        self.maximum = timedelta(seconds=settings.ingest_skew_max_seconds)
        self.retry_after = str(settings.ingest_retry_after_seconds)
        # Addresses repeat (keep-alive clients, proxies); parsing them is not free.
        self.client_ip = lru_cache(maxsize=16384)(self._client_ip)
        # The labelled child of a counter, looked up once per (source, event type).
        self.accepted_counter = lru_cache(maxsize=4096)(metrics.EVENTS_ACCEPTED.labels)

    async def read_body(self, request: Request) -> bytes:
        headers = request.headers
        check_media_type(headers.get("content-type"))
        body = await read_limited(
            request.stream(),
            headers.get("content-length"),
            headers.get("content-encoding"),
            self.limits.max_request_bytes,
        )
        metrics.PAYLOAD_BYTES.observe(len(body))
        return body

    def _client_ip(self, peer: str | None, forwarded_for: str | None) -> str | None:
        address = client_address(peer, forwarded_for, self.trusted)
        settings = self.settings
        return truncate_ip(
            address, settings.ingest_client_ip_ipv4_prefix, settings.ingest_client_ip_ipv6_prefix
        )

    def reported_ip(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        """An address a trusted server source reported, cut like the request's own."""
        settings = self.settings
        return truncate_ip(
            address, settings.ingest_client_ip_ipv4_prefix, settings.ingest_client_ip_ipv6_prefix
        )

    def facts(self, request: Request, client: Client, received_at: datetime) -> RequestFacts:
        headers = request.headers
        peer = request.client.host if request.client else None
        # The request's own User-Agent describes the user only when a browser sent it.
        browser = "origin" in headers or request.method == "GET"
        return RequestFacts(
            source=client.source,
            received_at=received_at,
            client_ip=self.client_ip(peer, headers.get("x-forwarded-for")),
            fallback_user_agent=headers.get("user-agent") if browser else None,
            tolerance=self.tolerance,
            maximum=self.maximum,
        )

    def check_rate(self, client: Client, count: int) -> None:
        rate, burst = self.settings.rate_of(client.key)
        wait = self.limiter.retry_after(client.key_id, rate, burst, count)
        if wait:
            metrics.EVENTS_REJECTED.labels("rate_limited").inc(count)
            raise ApiError(
                429,
                "rate_limited",
                f"write key over its rate limit of {rate:g} events/s; retry after {wait} s",
                headers={"Retry-After": str(wait)},
            )

    async def ingest(
        self,
        request: Request,
        client: Client,
        received_at: datetime,
        candidates: list[Candidate],
        endpoint: str,
    ) -> Outcome:
        """Validate, enrich and publish; return only once Kafka holds every accepted event.

        Takes over `candidates` (emptied once validated) and the outcome's records (emptied
        once the producer holds them): callers read counts and reasons from the outcome."""
        metrics.BATCH_EVENTS.observe(len(candidates))
        self.check_rate(client, len(candidates))
        outcome = process(
            candidates,
            self.facts(request, client, received_at),
            self.limits,
            REQUEST_ID.get(),
            endpoint,
        )
        # The parsed events are not needed past this point, and requests queued behind
        # Kafka's acknowledgements should not keep them alive: with 32 requests in flight
        # that measured ~10% less throughput (colder memory), just when a backlog needs it.
        candidates.clear()
        settings = self.settings
        try:
            await self.publisher.publish(
                [
                    (settings.kafka_events_topic, outcome.accepted),
                    (settings.kafka_dead_letter_topic, outcome.dead),
                ]
            )
        except PublishError as exc:
            metrics.EVENTS_REJECTED.labels("kafka_unavailable").inc(len(candidates))
            log.warning("publish failed", extra={"error": str(exc), "endpoint": endpoint})
            raise ApiError(
                503,
                "kafka_unavailable",
                "events not stored: Kafka did not acknowledge in time; retry",
                headers={"Retry-After": self.retry_after},
            ) from exc
        accepted: dict[str, int] = {}
        for event_type in outcome.accepted_types:
            accepted[event_type] = accepted.get(event_type, 0) + 1
        for event_type, count in accepted.items():
            self.accepted_counter(client.source, metric_event_type(event_type)).inc(count)
        if outcome.rejected:
            for code, count in Counter(code for _, code, _ in outcome.rejected).items():
                metrics.EVENTS_REJECTED.labels(code).inc(count)
        if outcome.rejected:
            log.info(
                "events rejected",
                extra={
                    "endpoint": endpoint,
                    "source": client.source,
                    "rejected": len(outcome.rejected),
                    "accepted": outcome.accepted_count,
                    "first_reason": outcome.rejected[0][2][:300],
                },
            )
        return outcome


def now() -> datetime:
    return datetime.now(UTC)
