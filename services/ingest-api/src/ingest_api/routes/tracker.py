"""`GET /v1/tracker.js`: the browser tracker, served with the collector."""

from __future__ import annotations

import hashlib
from importlib import resources

from fastapi import APIRouter, Request, Response

router = APIRouter(prefix="/v1", tags=["tracker"])

SCRIPT = resources.files("ingest_api").joinpath("static/tracker.js").read_bytes()
ETAG = '"' + hashlib.sha256(SCRIPT).hexdigest()[:20] + '"'


@router.get(
    "/tracker.js",
    summary="The browser tracker (dependency-free JavaScript)",
    response_class=Response,
    responses={
        200: {"content": {"application/javascript": {}}, "description": "The script"},
        304: {"description": "Not modified"},
    },
)
async def tracker(request: Request) -> Response:
    headers = {"ETag": ETAG, "Cache-Control": "public, max-age=3600"}
    if request.headers.get("if-none-match") == ETAG:
        return Response(status_code=304, headers=headers)
    return Response(SCRIPT, media_type="application/javascript; charset=utf-8", headers=headers)
