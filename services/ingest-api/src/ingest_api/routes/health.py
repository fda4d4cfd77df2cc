"""Liveness, readiness and metrics."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from ingest_api.publisher import Publisher
from ingest_api.workers import MULTIPROC_ENV, Worker

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Kafka is reachable; events can be accepted")
async def readyz(request: Request) -> JSONResponse:
    publisher: Publisher = request.app.state.publisher
    if not publisher.ready:
        return JSONResponse({"status": "kafka unreachable"}, status_code=503)
    worker: Worker | None = request.app.state.worker
    if worker is not None:
        # Any worker answers for the pod: ready only while every worker is.
        waiting = worker.not_ready()
        if waiting:
            return JSONResponse(
                {"status": "workers not ready", "workers": waiting}, status_code=503
            )
    return JSONResponse({"status": "ready"})


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def prometheus_metrics() -> Response:
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
    # Several worker processes: the sum of every worker's files (a registry per scrape, as
    # prometheus-client's multiprocess mode requires).
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
