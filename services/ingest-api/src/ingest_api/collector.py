"""The collector core: a `Request` in, a `Response` out, whatever server carried them.

`Collector.handle` finds the route, and the route's handler (`native.py`, `segment.py`,
`pixel.py`) reads what it needs through the collector's shared steps: authentication, the
body within its limits, rate limits, validation and enrichment, publishing. The adapters
(`asgi.py` below FastAPI's router, `routes/` through it) only translate.

A new tracker protocol is a module with a handler and its `Route`s, added to `ROUTES`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from ingest_api import metrics
from ingest_api.auth import Client, check_origin, presented_key, resolve_client
from ingest_api.config import Settings
from ingest_api.enrichment import RequestFacts, client_address, parse_networks, truncate_ip
from ingest_api.errors import ApiError, error_body
from ingest_api.exchange import Disconnected, Request, Response, json_response
from ingest_api.intake import (
    Batch,
    Candidate,
    Limits,
    Outcome,
    check_media_type,
    metric_event_type,
    process,
    read_limited,
)
from ingest_api.publisher import Publisher, PublishError
from ingest_api.ratelimit import RateLimiter, SharedRateLimiter

log = logging.getLogger(__name__)

Handler = Callable[["Collector", Request], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    """A path the core serves, the methods it answers and the handler that does."""

    path: str  # exact, or with `{name}` segments (matched by `Collector.routes_of`)
    methods: tuple[str, ...]
    handler: Handler


def path_pattern(template: str) -> re.Pattern[str]:
    """`/snowplow/{write_key}/i` -> a pattern matching one non-empty segment per name."""
    parts = re.split(r"\{[a-z_]+\}", template)
    return re.compile("^" + "[^/]+".join(re.escape(p) for p in parts) + "$")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Collector:
    def __init__(
        self,
        settings: Settings,
        publisher: Publisher,
        routes: Iterable[Route] | None = None,
        clock: Callable[[], datetime] = utc_now,
        limiter: RateLimiter | SharedRateLimiter | None = None,
    ) -> None:
        if routes is None:
            from ingest_api.routing import ROUTES  # the handlers import this module

            routes = ROUTES
        self.settings = settings
        self.publisher = publisher
        # path -> method -> route: one path may have a handler per method.
        by_path: dict[str, dict[str, Route]] = {}
        for route in routes:
            for method in route.methods:
                by_path.setdefault(route.path, {})[method] = route
        self.routes = {path: r for path, r in by_path.items() if "{" not in path}
        # Paths that name a write key (`/snowplow/{write_key}/i`): tried after the exact ones.
        self.templates = tuple(
            (path_pattern(path), r) for path, r in by_path.items() if "{" in path
        )
        self.clock = clock
        # Shared by the worker processes when there are several (ingest_api.workers).
        self.limiter = limiter or RateLimiter()
        self.trusted = parse_networks(settings.ingest_trusted_proxies)
        self.limits = Limits(
            max_events=settings.ingest_max_events_per_request,
            max_request_bytes=settings.ingest_max_request_bytes,
            max_event_bytes=settings.ingest_max_event_bytes,
            max_properties_bytes=settings.ingest_max_properties_bytes,
        )
        self.tolerance = timedelta(seconds=settings.ingest_skew_tolerance_seconds)
        self.maximum = timedelta(seconds=settings.ingest_skew_max_seconds)
        self.clock_policy = settings.clock_policy
        self.retry_after = str(settings.ingest_retry_after_seconds)
        self.body_timeout = settings.ingest_body_timeout_seconds
        # Bytes of request bodies being read right now, across requests (slow clients).
        self.buffered_bytes = 0
        # A pod's budget, split between its worker processes.
        self.max_buffered_bytes = settings.per_worker(settings.ingest_max_buffered_body_bytes)
        # Admission control: requests between their body and Kafka's acknowledgement (the
        # queue that grows at saturation), and the bound past which they are shed with 503.
        # Requests still receiving their bodies do not count: slow clients cannot fill it.
        self.inflight = 0
        self.max_inflight = settings.ingest_max_inflight_requests
        # Addresses repeat (keep-alive clients, proxies); parsing them is not free.
        self.client_ip = lru_cache(maxsize=16384)(self._client_ip)
        # The labelled child of a counter, looked up once per (source, event type).
        self.accepted_counter = lru_cache(maxsize=4096)(metrics.EVENTS_ACCEPTED.labels)

    # --- the entry point -----------------------------------------------------------------

    def routes_of(self, path: str) -> dict[str, Route] | None:
        """The routes serving a path, by method: exact paths first, then templates."""
        by_method = self.routes.get(path)
        if by_method is None:
            for pattern, candidate in self.templates:
                if pattern.match(path):
                    return candidate
        return by_method

    async def handle(self, request: Request) -> Response:
        by_method = self.routes_of(request.path)
        if by_method is None:
            return json_response(404, error_body("http_404", "Not Found"))
        route = by_method.get(request.method)
        if route is None:
            allow = ", ".join(by_method)
            return json_response(
                405, error_body("http_405", "Method Not Allowed"), headers=[("allow", allow)]
            )
        if self.inflight >= self.max_inflight:
            # Shed before reading and parsing the body, which an overloaded loop cannot
            # spare (the server discards the rest of it); `ingest` checks again after.
            return self.overloaded(count=None).response()
        try:
            return await route.handler(self, request)
        except ApiError as exc:
            return exc.response()

    def overloaded(self, count: int | None) -> ApiError:
        """Admission control's answer (INGEST_MAX_INFLIGHT_REQUESTS)."""
        if count is not None:
            metrics.EVENTS_REJECTED.labels("overloaded").inc(count)
        return ApiError(
            503,
            "overloaded",
            f"the collector is publishing {self.inflight} requests already "
            "(INGEST_MAX_INFLIGHT_REQUESTS); send the same body again after Retry-After",
            # The queue drains in well under a second once load falls.
            headers={"Retry-After": "1"},
        )

    # --- steps the handlers share ----------------------------------------------------------

    def offered_key(self, request: Request) -> str | None:
        """The write key named by a header or the query string, if any."""
        return presented_key(
            request.headers, lambda: {"write_key": request.query_value("write_key") or ""}
        )

    def authenticate(self, request: Request, presented: str | None) -> Client:
        """The client of a presented write key: 401 without a known key, 403 when the key
        does not allow the request's Origin."""
        client = resolve_client(presented, self.settings)
        check_origin(request.headers.get("origin"), client)
        return client

    async def read_body(self, request: Request) -> bytes:
        """The (decompressed) body within its limits: size (413), encoding (415), the time
        to send it (408), and the memory every body being read holds at once (503)."""
        headers = request.headers
        check_media_type(headers.get("content-type"))
        held = [0]
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await read_limited(
                    self._charged(request.body, held),
                    headers.get("content-length"),
                    headers.get("content-encoding"),
                    self.limits.max_request_bytes,
                )
        except TimeoutError as exc:
            raise ApiError(
                408,
                "request_timeout",
                f"the body did not arrive within {self.body_timeout:g} s "
                "(INGEST_BODY_TIMEOUT_SECONDS)",
            ) from exc
        except Disconnected as exc:
            raise ApiError(
                400, "client_disconnected", "the client closed the connection mid-body"
            ) from exc
        finally:
            self.buffered_bytes -= held[0]
        metrics.PAYLOAD_BYTES.observe(len(body))
        return body

    async def _charged(self, chunks: AsyncIterable[bytes], held: list[int]) -> AsyncIterator[bytes]:
        """The body's chunks, each counted against the bytes all requests may hold."""
        async for chunk in chunks:
            if self.buffered_bytes + len(chunk) > self.max_buffered_bytes:
                raise ApiError(
                    503,
                    "server_busy",
                    "too many request bodies are being received; retry "
                    "(INGEST_MAX_BUFFERED_BODY_BYTES)",
                    headers={"Retry-After": self.retry_after},
                )
            self.buffered_bytes += len(chunk)
            held[0] += len(chunk)
            yield chunk

    def _client_ip(self, peer: str | None, forwarded_for: str | None) -> str | None:
        address = client_address(peer, forwarded_for, self.trusted)
        settings = self.settings
        return truncate_ip(
            address, settings.ingest_client_ip_ipv4_prefix, settings.ingest_client_ip_ipv6_prefix
        )

    def reported_ip(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        """An address a trusted server source reported for its user, cut like the request's."""
        settings = self.settings
        return truncate_ip(
            address, settings.ingest_client_ip_ipv4_prefix, settings.ingest_client_ip_ipv6_prefix
        )

    def facts(
        self, request: Request, client: Client, received_at: datetime, anonymous: bool = False
    ) -> RequestFacts:
        headers = request.headers
        # The request's own User-Agent describes the user only when a browser sent it.
        browser = "origin" in headers or request.method == "GET"
        return RequestFacts(
            source=client.source,
            received_at=received_at,
            client_ip=None
            if anonymous
            else self.client_ip(request.peer, headers.get("x-forwarded-for")),
            fallback_user_agent=headers.get("user-agent") if browser else None,
            tolerance=self.tolerance,
            maximum=self.maximum,
            clock_policy=self.clock_policy,
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
        batch: Batch,
        anonymous: bool = False,
    ) -> Outcome:
        """Validate, enrich and publish; return only once the bus holds every accepted event.

        Takes over `candidates` (emptied once validated) and the outcome's records (emptied
        once the publisher holds them): callers read counts and reasons from the outcome.
        `anonymous`: the client asked that its address not be recorded (Snowplow's
        SP-Anonymous)."""
        count = len(candidates)
        metrics.BATCH_EVENTS.observe(count)
        self.check_rate(client, count)
        if self.inflight >= self.max_inflight:
            raise self.overloaded(count)
        outcome = process(
            candidates,
            self.facts(request, client, received_at, anonymous),
            self.limits,
            request.request_id,
            endpoint,
            batch,
        )
        # The parsed events are not needed past this point, and requests queued behind
        # Kafka's acknowledgements should not keep them alive: with 32 requests in flight
        # that measured ~10% less throughput (colder memory), just when a backlog needs it.
        candidates.clear()
        # Counted from here: validation ran without yielding, so no other request can
        # have passed the check above meanwhile.
        self.inflight += 1
        try:
            await self.publisher.publish(outcome.accepted, outcome.dead)
        except PublishError as exc:
            metrics.EVENTS_REJECTED.labels("kafka_unavailable").inc(count)
            log.warning("publish failed", extra={"error": str(exc), "endpoint": endpoint})
            raise ApiError(
                503,
                "kafka_unavailable",
                "Kafka did not acknowledge every event in time; send the same body again",
                headers={"Retry-After": self.retry_after},
            ) from exc
        finally:
            self.inflight -= 1
        accepted: dict[str, int] = {}
        for event_type in outcome.accepted_types:
            accepted[event_type] = accepted.get(event_type, 0) + 1
        for event_type, n in accepted.items():
            self.accepted_counter(client.source, metric_event_type(event_type)).inc(n)
        for bound, n in outcome.adjusted.items():
            metrics.EVENT_TIME_ADJUSTED.labels(bound).inc(n)
        if outcome.rejected:
            for code, n in Counter(code for _, code, _ in outcome.rejected).items():
                metrics.EVENTS_REJECTED.labels(code).inc(n)
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
