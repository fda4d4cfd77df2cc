"""The Segment HTTP Tracking API in the OpenAPI document (served by the core:
`ingest_api.segment`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ingest_api.openapi import COMMON_ERRORS, SegmentResult, error, json_body, ref
from ingest_api.routes.collect import add_core_route
from ingest_api.segment import CALL_TYPES, SegmentBatch, SegmentMessage

router = APIRouter(prefix="/v1", tags=["segment"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: error("Malformed JSON, or a body that is not a batch/message object"),
    **COMMON_ERRORS,
}

add_core_route(
    router,
    "/batch",
    "POST",
    "batch",
    response_model=SegmentResult,
    summary="Segment: a batch of calls",
    openapi_extra=json_body(ref(SegmentBatch)),
    responses=_RESPONSES,
)
for _call in CALL_TYPES:
    add_core_route(
        router,
        f"/{_call}",
        "POST",
        f"segment_{_call}",
        response_model=SegmentResult,
        summary=f"Segment: one {_call} call",
        openapi_extra=json_body(ref(SegmentMessage)),
        responses=_RESPONSES,
    )
