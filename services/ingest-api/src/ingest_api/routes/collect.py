"""The FastAPI adapter of the collector core: one endpoint that hands the request over.

Each collecting route is registered here with its OpenAPI description; what it answers is
decided by the core, exactly as on the fast path (`DispatchMiddleware`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response as StarletteResponse

from ingest_api.asgi import note_origins, request_from_scope
from ingest_api.collector import Collector


async def through_core(request: Request) -> StarletteResponse:
    collector: Collector = request.app.state.collector
    response = await collector.handle(request_from_scope(request.scope, request.receive))
    note_origins(request.scope, response)
    return StarletteResponse(
        response.body,
        status_code=response.status,
        headers=dict(response.headers),
        media_type=response.media_type,
    )


def add_core_route(router: APIRouter, path: str, method: str, name: str, **openapi: Any) -> None:
    """Register `path` (relative to the router's prefix) as served by the core; `name`
    makes its OpenAPI operation id."""
    router.add_api_route(path, through_core, methods=[method], name=name, **openapi)
