"""The FastAPI application; clients start and stop with the lifespan, never at import."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException

from clickstream_common.logs import configure_logging
from ingest_api.collector import Collector
from ingest_api.config import Settings, get_settings
from ingest_api.enrichment import user_agent_info
from ingest_api.errors import error_response
from ingest_api.hot_path import HOT_ROUTES
from ingest_api.middleware import CollectorMiddleware, RepeatFilter, install_log_record_factory
from ingest_api.openapi import components
from ingest_api.publisher import KafkaPublisher
from ingest_api.routes import events, health, pixel, segment, tracker, trackers

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "The write key"},
    "basic": {"type": "http", "scheme": "basic", "description": "Write key as user name"},
    "header": {"type": "apiKey", "in": "header", "name": "X-Write-Key"},
    "query": {"type": "apiKey", "in": "query", "name": "write_key"},
}
_OPEN_PATHS = ("/v1/tracker.js", "/healthz", "/readyz")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    install_log_record_factory()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        user_agent_info("Mozilla/5.0")  # the parser compiles its rules on first use
        publisher = KafkaPublisher(
            settings.kafka_bootstrap_servers,
            settings.ingest_publish_timeout_seconds,
            linger_ms=settings.ingest_kafka_linger_ms,
        )
        await publisher.start()
        app.state.publisher = publisher
        app.state.collector = Collector(settings, publisher)
        try:
            yield
        finally:
            await publisher.stop()

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
    for module in (events, segment, trackers, pixel, tracker, health):
        app.include_router(module.router)
    app.add_middleware(CollectorMiddleware, settings=settings, hot_routes=HOT_ROUTES)

    async def http_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, StarletteHTTPException):  # registered for that class only
            raise exc
        return error_response(exc)

    app.add_exception_handler(StarletteHTTPException, http_error)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in components().items():
            schemas.setdefault(name, schema)
        document["components"]["securitySchemes"] = SECURITY_SCHEMES
        alternatives: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]
        for path, operations in document["paths"].items():
            if path.startswith("/v1/") and path not in _OPEN_PATHS:
                for operation in operations.values():
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


def run() -> None:
    import uvicorn

    settings = get_settings()
    configure_logging("ingest-api", settings.log_level)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter())
    app = create_app(settings)
    tune_garbage_collector()
    uvicorn.run(
        app,
        host=settings.ingest_host,
        port=settings.ingest_port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        # Client addresses are resolved by the app (INGEST_TRUSTED_PROXIES), not by uvicorn,
        # which would otherwise believe X-Forwarded-For from 127.0.0.1.
        proxy_headers=False,
    )
