"""The collector's pure-ASGI middleware, one class per concern, outermost first:

- `RequestIdMiddleware`: every request gets an id (the client's, if sane), in the logs and in
  the `X-Request-ID` answer header;
- `TelemetryMiddleware`: request metrics, and a log line for refusals and failures;
- `CorsMiddleware`: preflights, and the CORS headers of the key a request resolved to;
- `DispatchMiddleware`: the collector core's routes, served below FastAPI's router.

Pure ASGI (not BaseHTTPMiddleware) keeps the per-request cost low on the hot path.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import time
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clickstream_common.asgi import StatusNotingSend
from ingest_api import metrics
from ingest_api.asgi import REQUEST_ID_KEY, ROUTE_KEY, serve
from ingest_api.auth import find_key, origin_allowed
from ingest_api.config import Settings
from ingest_api.sdk_settings import path_write_key

log = logging.getLogger("ingest_api.access")

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# An origin is echoed in a response header only if it is printable ASCII without spaces (as
# every real origin is): anything else could break the header or the client's parser.
_SANE_ORIGIN = re.compile(r"^[\x21-\x7e]{1,512}$")
_ALLOW_METHODS = b"GET, POST, OPTIONS"
_ALLOW_HEADERS = b"Content-Type, Content-Encoding, Authorization, X-Write-Key, X-Request-ID"
# SDKs add headers of their own (RudderStack's AnonymousId, Segment's X-Retry-Count,
# Snowplow's SP-Anonymous): a preflight is allowed the headers it asks for, within reason.
_REQUESTED_HEADERS = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~ ,-]{1,512}$")
_EXPOSE_HEADERS = b"Retry-After, X-Request-ID"


def install_log_record_factory() -> None:
    """Every log record carries the request id of the request it was written for."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_adds_request_id", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        request_id = REQUEST_ID.get()
        if request_id:
            record.request_id = request_id
        return record

    factory._adds_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (`name` in lower case)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = header(scope, b"x-request-id")
        # 32 random hex digits, as uuid4().hex, without building a UUID on the hot path.
        request_id = offered if offered and _SANE_ID.match(offered) else os.urandom(16).hex()
        raw = request_id.encode()
        scope[REQUEST_ID_KEY] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"x-request-id", raw)]
                message = {**message, "headers": headers}
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


def _requests_counter(route: str, method: str, status: int) -> Any:
    return metrics.HTTP_REQUESTS.labels(route, method, str(status))


def route_label(scope: Scope) -> str:
    """The route a request was answered by: a bounded label, never the raw path."""
    named = scope.get(ROUTE_KEY)
    if named:
        return str(named)
    matched = scope.get("route")
    return getattr(matched, "path", None) or "unmatched"


class TelemetryMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.access_log = settings.ingest_access_log
        # Labelled metric children, looked up once per label set rather than per request.
        self.requests_counter = lru_cache(maxsize=1024)(_requests_counter)
        self.seconds_histogram = lru_cache(maxsize=256)(metrics.HTTP_SECONDS.labels)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        begin = time.perf_counter()
        noting = StatusNotingSend(send)
        try:
            await self.app(scope, receive, noting)
        finally:
            status = noting.status
            elapsed = time.perf_counter() - begin
            route = route_label(scope)
            self.requests_counter(route, scope["method"], status).inc()
            self.seconds_histogram(route).observe(elapsed)
            if self.access_log or status >= 400:
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )


class CorsMiddleware:
    """Browsers may send from the origins a write key allows.

    A handler that resolved the request's key leaves the key's origins in the scope's state
    (`allowed_origins`); without a resolved key (a preflight, a request refused before its
    key was known) an origin passes if any key allows it."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.max_age = str(settings.ingest_cors_max_age_seconds).encode()
        self.any_key_origins: tuple[str, ...] = tuple(
            {o for key in settings.ingest_write_keys.values() for o in settings.origins_of(key)}
        )

    def _preflight_origins(self, scope: Scope) -> tuple[str, ...]:
        # A key named by the path (Snowplow's endpoint, Segment's settings) or the query.
        presented = path_write_key(scope["path"])
        query = scope.get("query_string", b"").decode("latin-1")
        if presented is None and ("write_key=" in query or "writeKey=" in query):
            params = dict(parse_qsl(query))
            presented = params.get("write_key") or params.get("writeKey")
        if presented:
            key = find_key(presented, self.settings.ingest_write_keys)
            if key is not None:
                return self.settings.origins_of(key)
        return self.any_key_origins

    async def _preflight(self, scope: Scope, send: Send, origin: str) -> None:
        allowed = origin_allowed(origin, self._preflight_origins(scope))
        headers = [(b"vary", b"Origin"), (b"content-length", b"0")]
        if allowed:
            requested = header(scope, b"access-control-request-headers") or ""
            allow_headers = _ALLOW_HEADERS
            if _REQUESTED_HEADERS.match(requested):
                allow_headers += b", " + requested.encode("latin-1")
            headers += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                # Snowplow's and RudderStack's browser SDKs send with credentials; the
                # collector sets no cookie, and the write key is what authorises.
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-allow-methods", _ALLOW_METHODS),
                (b"access-control-allow-headers", allow_headers),
                # Browsers cache the answer (Chromium caps it at 2 hours).
                (b"access-control-max-age", self.max_age),
            ]
        status = 204 if allowed else 403
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = header(scope, b"origin") if scope["type"] == "http" else None
        if not origin:
            await self.app(scope, receive, send)
            return
        if not _SANE_ORIGIN.match(origin):
            origin = "null"  # never allowed by a list, only by "*"
        if scope["method"] == "OPTIONS" and header(scope, b"access-control-request-method"):
            scope[ROUTE_KEY] = "preflight"
            await self._preflight(scope, send, origin)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                allowed = scope.get("state", {}).get("allowed_origins")
                if allowed is None:
                    allowed = self.any_key_origins
                if origin_allowed(origin, allowed):
                    headers = [
                        *message.get("headers", ()),
                        (b"access-control-allow-origin", origin.encode("latin-1")),
                        (b"access-control-allow-credentials", b"true"),
                        (b"access-control-expose-headers", _EXPOSE_HEADERS),
                        (b"vary", b"Origin"),
                    ]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cors)


class DispatchMiddleware:
    """The collector core's routes below FastAPI's router.

    FastAPI's routing, dependency solving and exception layers cost about 135 us per request
    on this stack (a bare FastAPI endpoint answers ~5,200 requests/s where the same endpoint
    as plain ASGI answers ~18,000), more than validating, enriching and publishing a single
    event. The FastAPI routes of the same paths run the same core (`routes/collect.py`); they
    serve when INGEST_FAST_PATH is false, and document the endpoints either way.
    """

    def __init__(self, app: ASGIApp, routes: Iterable[tuple[str, str]]) -> None:
        self.app = app
        self.routes = frozenset(routes)  # (method, path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"]) in self.routes:
            scope[ROUTE_KEY] = scope["path"]
            await serve(scope["app"].state.collector, scope, receive, send)
            return
        await self.app(scope, receive, send)


class RepeatFilter(logging.Filter):
    """Lets one identical message through per interval: a broker outage makes the Kafka
    client log the same connection error several times a second."""

    def __init__(self, interval_seconds: float = 10.0) -> None:
        super().__init__()
        self.interval = interval_seconds
        self.last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("aiokafka"):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self.last.get(key, -self.interval) < self.interval:
            return False
        if len(self.last) > 1000:
            self.last.clear()
        self.last[key] = now
        return True
