"""The FastAPI application: the recommendations API, probes and metrics; the consumer that
keeps the state fresh runs in the same process, started and stopped with the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from clickstream_common.asgi import StatusNotingSend
from clickstream_common.logs import configure_logging
from recommender import metrics
from recommender.auth import ReadKey
from recommender.config import Settings, get_settings
from recommender.consumer import EventConsumer
from recommender.state import Item, State

IdText = Annotated[str, Path(min_length=1, max_length=256)]
Limit = Annotated[int, Query(ge=1, le=100)]


class Recommendation(BaseModel):
    product_id: str
    score: float
    reason: str  # co_viewed, co_bought or trending


class Recommendations(BaseModel):
    items: list[Recommendation]
    personalized: bool = False
    based_on: list[str] = []


def _items(items: list[Item]) -> list[Recommendation]:
    return [Recommendation(product_id=i.product_id, score=i.score, reason=i.reason) for i in items]


async def get_state(request: Request) -> State:
    state: State = request.app.state.recommender
    return state


StateDep = Annotated[State, Depends(get_state)]
router = APIRouter(prefix="/v1/recommendations", tags=["recommendations"])


@router.get("/trending", response_model=Recommendations)
async def trending(_: ReadKey, state: StateDep, limit: Limit = 10) -> Recommendations:
    """The products most viewed and added to cart lately (time-decayed)."""
    top = await state.trending(limit)
    return Recommendations(
        items=[Recommendation(product_id=p, score=round(s, 6), reason="trending") for p, s in top]
    )


@router.get("/products/{product_id}/similar", response_model=Recommendations)
async def similar(
    _: ReadKey, state: StateDep, product_id: IdText, limit: Limit = 10
) -> Recommendations:
    """Products viewed in the same sessions or put in the same carts as this one."""
    items = await state.similar(product_id, limit)
    return Recommendations(items=_items(items), based_on=[product_id])


@router.get("/users/{user_id}", response_model=Recommendations)
async def for_user(
    _: ReadKey, state: StateDep, user_id: IdText, limit: Limit = 10
) -> Recommendations:
    """From the user's recent product views (user_id, or anonymous_id for visitors not logged
    in); trending products when the user has no history yet."""
    recent, items = await state.for_user(user_id, limit)
    # Ranked from the user's own history (each item's `reason` names its strongest signal,
    # which can be trending even then).
    personalized = bool(recent)
    metrics.PERSONALIZED.labels("personalized" if personalized else "trending").inc()
    return Recommendations(items=_items(items), personalized=personalized, based_on=recent)


class MeasuredRoutes:
    """Request counts and latency per route, as a plain ASGI middleware: Starlette's
    `@app.middleware("http")` runs each request through an extra task and memory streams;
    without them the p99 at 500 requests/s fell from 9.6-29 ms to 4.3-5.4 ms
    (bench/recommender, docs/benchmarks.md)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
            # The router puts the matched route in the scope it shares with us.
            name = getattr(scope.get("route"), "path", "unmatched")
            metrics.HTTP_SECONDS.labels(name).observe(time.perf_counter() - begin)
            metrics.HTTP_REQUESTS.labels(name, str(status)).inc()


def create_app(settings: Settings | None = None, *, consume: bool | None = None) -> FastAPI:
    settings = settings or get_settings()
    consume = settings.recommender_consume if consume is None else consume

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = State(settings)
        app.state.recommender = state
        stopping = asyncio.Event()
        consumer = EventConsumer(settings, state) if consume else None
        task = None
        if consumer is not None:
            await consumer.start()
            task = asyncio.create_task(consumer.run(stopping))
        app.state.consumer = consumer
        try:
            yield
        finally:
            stopping.set()
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if consumer is not None:
                await consumer.stop()
            await state.close()

    app = FastAPI(
        title="clickstream recommendations API",
        version="0.1.0",
        description="Trending products, similar products and per-user recommendations, "
        "updated from the event stream within seconds. Every call needs a read key.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(router)

    app.add_middleware(MeasuredRoutes)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return Response("ok\n", media_type="text/plain")

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        state: State = request.app.state.recommender
        consumer: EventConsumer | None = request.app.state.consumer
        try:
            ok = await state.ping() and (consumer is None or consumer.running)
        except Exception:
            ok = False
        metrics.READY.set(1 if ok else 0)
        return Response(
            "ready\n" if ok else "not ready\n",
            status_code=200 if ok else 503,
            media_type="text/plain",
        )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def run() -> None:
    import uvicorn

    settings = get_settings()
    configure_logging("recommender", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.recommender_host,
        port=settings.recommender_port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
