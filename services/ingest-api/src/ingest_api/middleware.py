"""One pure-ASGI middleware for every request: request id, CORS, metrics and access log.

Pure ASGI (not BaseHTTPMiddleware) keeps the per-request cost low on the hot path.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest_api import metrics
from ingest_api.auth import find_key, origin_allowed
from ingest_api.config import Settings
from ingest_api.sdk_settings import path_write_key

log = logging.getLogger("ingest_api.access")

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
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


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _requests_counter(route: str, method: str, status: int) -> Any:
    return metrics.HTTP_REQUESTS.labels(route, method, str(status))


class CollectorMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        hot_routes: Mapping[tuple[str, str], ASGIApp] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        # (method, path) -> an ASGI app serving it without FastAPI's router (see hot_path.py).
        self.hot_routes = dict(hot_routes or {})
        # Labelled metric children, looked up once per label set rather than per request.
        self.requests_counter = lru_cache(maxsize=1024)(_requests_counter)
        self.seconds_histogram = lru_cache(maxsize=256)(metrics.HTTP_SECONDS.labels)
        self.max_age = str(settings.ingest_cors_max_age_seconds).encode()
        # Without a resolved key (a preflight, or a request refused before auth), an origin
        # is allowed if any key allows it.
        self.any_key_origins: tuple[str, ...] = tuple(
            {o for key in settings.ingest_write_keys.values() for o in settings.origins_of(key)}
        )

    def _preflight_origins(self, scope: Scope) -> tuple[str, ...]:
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

    async def _preflight(self, scope: Scope, send: Send, origin: str) -> int:
        allowed = origin_allowed(origin, self._preflight_origins(scope))
        headers = [(b"vary", b"Origin"), (b"content-length", b"0")]
        if allowed:
            requested = _header(scope, b"access-control-request-headers") or ""
            allow_headers = (
                requested.encode("latin-1")
                if _REQUESTED_HEADERS.match(requested)
                else _ALLOW_HEADERS
            )
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
        return status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        begin = time.perf_counter()
        offered = _header(scope, b"x-request-id")
        # 32 random hex digits, as uuid4().hex, without building a UUID on the hot path.
        request_id = offered if offered and _SANE_ID.match(offered) else os.urandom(16).hex()
        token = REQUEST_ID.set(request_id)
        origin = _header(scope, b"origin")
        status = 500
        route = "unmatched"
        try:
            if (
                origin
                and scope["method"] == "OPTIONS"
                and _header(scope, b"access-control-request-method")
            ):
                route = "preflight"
                status = await self._preflight(scope, send, origin)
            else:

                async def send_wrapper(message: Message) -> None:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                        headers = list(message.get("headers", []))
                        headers.append((b"x-request-id", request_id.encode()))
                        if origin:
                            allowed = scope.get("state", {}).get("allowed_origins")
                            if allowed is None:
                                allowed = self.any_key_origins
                            if origin_allowed(origin, allowed):
                                headers += [
                                    (b"access-control-allow-origin", origin.encode("latin-1")),
                                    (b"access-control-allow-credentials", b"true"),
                                    (b"access-control-expose-headers", _EXPOSE_HEADERS),
                                    (b"vary", b"Origin"),
                                ]
                        message = {**message, "headers": headers}
                    await send(message)

                hot = self.hot_routes.get((scope["method"], scope["path"]))
                if hot is not None:
                    route = scope["path"]
                    await hot(scope, receive, send_wrapper)
                    return
                try:
                    await self.app(scope, receive, send_wrapper)
                finally:
                    matched = scope.get("route")
                    route = getattr(matched, "path", None) or "unmatched"
        finally:
            REQUEST_ID.reset(token)
            elapsed = time.perf_counter() - begin
            self.requests_counter(route, scope["method"], status).inc()
            self.seconds_histogram(route).observe(elapsed)
            if self.settings.ingest_access_log or status >= 400:
                log.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )


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
