"""The FastAPI application; clients start and stop with the lifespan, never at import."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from starlette.routing import Match

from clickstream_common.logs import configure_logging
from ingest_api import metrics
from ingest_api.config import Settings, get_settings
from ingest_api.publisher import KafkaPublisher
from ingest_api.routes import events, health


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        publisher = KafkaPublisher(
            settings.kafka_bootstrap_servers, settings.ingest_publish_timeout_seconds
        )
        await publisher.start()
        metrics.READY.set(1 if publisher.ready else 0)
        app.state.publisher = publisher
        try:
            yield
        finally:
            await publisher.stop()

    app = FastAPI(
        title="clickstream ingest API",
        version="0.1.0",
        description="Collects behavioural events and publishes them to Kafka.",
        lifespan=lifespan,
    )
    app.dependency_overrides[get_settings] = lambda: settings
    app.include_router(events.router)
    app.include_router(health.router)

    @app.middleware("http")
    async def record_metrics(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        begin = time.perf_counter()
        response = await call_next(request)
        route = "unmatched"
        for candidate in app.router.routes:
            match, _ = candidate.matches(request.scope)
            if match is Match.FULL:
                route = getattr(candidate, "path", "unmatched")
                break
        metrics.HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        metrics.HTTP_SECONDS.labels(route).observe(time.perf_counter() - begin)
        return response

    return app


def run() -> None:
    import uvicorn

    settings = get_settings()
    configure_logging("ingest-api", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.ingest_host,
        port=settings.ingest_port,
        log_config=None,
        access_log=False,
    )
