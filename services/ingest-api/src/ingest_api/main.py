"""The FastAPI application; clients start and stop with the lifespan, never at import."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException

from clickstream_common.kafka_security import aiokafka_options
from clickstream_common.logs import configure_logging
from ingest_api.collector import Collector, utc_now
from ingest_api.config import Settings, get_settings
from ingest_api.durability import check_topics
from ingest_api.enrichment import user_agent_info
from ingest_api.errors import http_error_response
from ingest_api.middleware import (
    CorsMiddleware,
    DispatchMiddleware,
    RepeatFilter,
    RequestIdMiddleware,
    TelemetryMiddleware,
    install_log_record_factory,
)
from ingest_api.openapi import components
from ingest_api.publisher import Publisher, publisher_from_settings
from ingest_api.ratelimit import SharedRateLimiter
from ingest_api.routes import events, health, pixel, segment, tracker, trackers
from ingest_api.routing import ROUTES
from ingest_api.workers import Supervisor, Worker, listening_socket, worker_count

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "The write key"},
    "basic": {"type": "http", "scheme": "basic", "description": "Write key as user name"},
    "header": {"type": "apiKey", "in": "header", "name": "X-Write-Key"},
    "query": {"type": "apiKey", "in": "query", "name": "write_key"},
}
_OPEN_PATHS = ("/v1/tracker.js", "/healthz", "/readyz")
_HEADER_TOO_LARGE = {
    "description": "Request line and headers over INGEST_MAX_HEADER_BYTES; the connection is "
    "closed",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
}


def create_app(
    settings: Settings | None = None,
    publisher: Publisher | None = None,
    clock: Callable[[], datetime] = utc_now,
    worker: Worker | None = None,
) -> FastAPI:
    """The app; `publisher` and `clock` replace the bus and the time in tests. `worker`: this
    process's place among several (ingest_api.workers): shared rate limits and readiness."""
    settings = settings or get_settings()
    install_log_record_factory()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        user_agent_info("Mozilla/5.0")  # the parser compiles its rules on first use
        bus = publisher or publisher_from_settings(settings)
        await bus.start()
        app.state.publisher = bus
        limiter = None
        if worker is not None:
            limiter = SharedRateLimiter(worker.shared.rate_table, worker.shared.count)
        app.state.collector = Collector(settings, bus, ROUTES, clock, limiter)
        heartbeat = asyncio.create_task(worker.heartbeat(bus)) if worker else None
        try:
            yield
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
            await bus.stop()

    app = FastAPI(
        title="clickstream ingest API",
        version="0.2.0",
        description="Collects behavioural events and publishes them to Kafka. Every event "
        "answered with 2xx is in Kafka. Native API, Segment HTTP Tracking API, pixel and "
        "browser tracker.",
        lifespan=lifespan,
        # Prometheus is the collector's telemetry; FastAPI's OpenTelemetry hooks would
        # otherwise look up the global providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.worker = worker
    for module in (events, segment, trackers, pixel, tracker, health):
        app.include_router(module.router)
    # Added innermost first: requests pass request id, telemetry, CORS, then dispatch.
    if settings.ingest_fast_path:
        fast = [(method, route.path) for route in ROUTES for method in route.methods]
        app.add_middleware(DispatchMiddleware, routes=fast)
    app.add_middleware(CorsMiddleware, settings=settings)
    app.add_middleware(TelemetryMiddleware, settings=settings)
    app.add_middleware(RequestIdMiddleware)

    async def http_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, StarletteHTTPException):  # registered for that class only
            raise exc
        return http_error_response(exc)

    app.add_exception_handler(StarletteHTTPException, http_error)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in components(settings.ingest_max_events_per_request).items():
            schemas.setdefault(name, schema)
        document["components"]["securitySchemes"] = SECURITY_SCHEMES
        alternatives: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]
        for path, operations in document["paths"].items():
            for operation in operations.values():
                # The server's own answers (server.py), before any route runs.
                operation["responses"].setdefault("431", _HEADER_TOO_LARGE)
                if path.startswith("/v1/") and path not in _OPEN_PATHS:
                    operation["security"] = alternatives
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def tune_garbage_collector() -> None:
    """For the server process (not for tests that build the app).

    Modules, schemas and the app live as long as the process: frozen, they stay out of the
    collector's full passes, which otherwise show as pauses in the latency tail. Young
    collections every 20,000 allocations instead of 700: a 50-event request allocates
    thousands of short-lived objects, and each pass costs time on the hot path.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def check_durability(settings: Settings) -> None:
    """Warn, or refuse to start (INGEST_REQUIRE_DURABLE_TOPIC), when acks=all on the topics
    is weaker than documented (ingest_api.durability); once per pod, before any worker."""
    if settings.ingest_sink != "kafka":
        return  # Kinesis replicates every record across three zones by itself
    asyncio.run(
        check_topics(
            settings.kafka_bootstrap_servers,
            [settings.kafka_events_topic, settings.kafka_dead_letter_topic],
            min_replication_factor=settings.ingest_durable_min_replication_factor,
            min_insync_replicas=settings.ingest_durable_min_insync_replicas,
            require=settings.ingest_require_durable_topic,
            timeout_seconds=settings.ingest_publish_timeout_seconds,
            client_options=aiokafka_options(settings),
        )
    )


def configure_process_logging(settings: Settings) -> None:
    configure_logging("ingest-api", settings.log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter())


def serve(worker: Worker | None = None) -> None:
    """One server process: the only one, or one of the workers (then on its own
    SO_REUSEPORT socket)."""
    import uvicorn

    from ingest_api.server import guarded_protocol

    settings = get_settings()
    configure_process_logging(settings)
    app = create_app(settings, worker=worker)
    tune_garbage_collector()
    config = uvicorn.Config(
        app,
        host=settings.ingest_host,
        port=settings.ingest_port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        # httptools with the limits uvicorn lacks (server.py).
        http=guarded_protocol(settings),
        timeout_keep_alive=settings.ingest_keep_alive_seconds,
        # Client addresses are resolved by the app (INGEST_TRUSTED_PROXIES), not by uvicorn,
        # which would otherwise believe X-Forwarded-For from 127.0.0.1.
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    if worker is None:
        server.run()
    else:
        server.run(sockets=[listening_socket(settings.ingest_host, settings.ingest_port)])


def run() -> None:
    settings = get_settings()
    configure_process_logging(settings)
    check_durability(settings)
    count = worker_count(settings)
    if count == 1:
        serve()
        return
    # The workers read the resolved count (their settings come from the environment).
    os.environ["INGEST_WORKERS"] = str(count)
    Supervisor(settings, count).run()
