"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest_api.publisher import Publisher

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Kafka is reachable; events can be accepted")
async def readyz(request: Request) -> JSONResponse:
    publisher: Publisher = request.app.state.publisher
    if publisher.ready:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "kafka unreachable"}, status_code=503)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
