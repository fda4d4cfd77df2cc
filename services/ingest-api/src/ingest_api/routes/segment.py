"""The Segment HTTP Tracking API: `/v1/batch`, `/v1/track`, `/v1/page`, ... .

Segment and RudderStack SDKs work unchanged with their host pointed here. They expect 200
on success and read `code`/`message` from an error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from ingest_api.auth import Client, check_origin, resolve_client
from ingest_api.collector import Collector, now
from ingest_api.deps import OptionalIntake, OptionalIntakeDep
from ingest_api.errors import ApiError
from ingest_api.intake import Candidate, check_count, load_json
from ingest_api.openapi import COMMON_ERRORS, SegmentResult, error, json_body, ref
from ingest_api.segment import (
    CALL_TYPES,
    SegmentBatch,
    SegmentMessage,
    candidates,
    context_ip,
    lenient_datetime,
)

router = APIRouter(prefix="/v1", tags=["segment"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: error("Malformed JSON, or a body that is not a batch/message object"),
    **COMMON_ERRORS,
}


def _client(
    request: Request, client: Client | None, document: dict[str, Any], collector: Collector
) -> Client:
    if client is not None:
        return client
    # analytics.js and others may carry the key in the body instead of a header.
    body_key = document.get("writeKey")
    client = resolve_client(body_key if isinstance(body_key, str) else None, collector.settings)
    check_origin(request, client)
    return client


async def _handle(request: Request, intake: OptionalIntake, call: str | None) -> Response:
    collector = intake.collector
    received_at = now()
    resolved, mapped = _candidates(
        request, intake.client, collector, await collector.read_body(request), call, received_at
    )
    outcome = await collector.ingest(request, resolved, received_at, mapped, call or "batch")
    # As Segment's own API: 200 once the request is handled, with the messages that were
    # refused named (they are in the dead-letter topic); SDKs do not resend those.
    result = {"success": not outcome.rejected, **outcome.result()}
    return Response(orjson.dumps(result), media_type="application/json")


# The Segment request handling, for the other paths Segment-style SDKs post to.
handle_segment = _handle


def _candidates(
    request: Request,
    client: Client | None,
    collector: Collector,
    body: bytes,
    call: str | None,
    received_at: datetime,
) -> tuple[Client, list[Candidate]]:
    """The request's client and its messages as native events; the body and its parsed
    document are not kept beyond this."""
    document = load_json(body)
    if not isinstance(document, dict):
        raise ApiError(400, "invalid_body", "body must be a JSON object")
    resolved = _client(request, client, document, collector)
    if call is None:
        messages = document.get("batch")
        if not isinstance(messages, list):
            raise ApiError(400, "invalid_body", "batch must be a JSON array of messages")
        check_count(len(messages), collector.limits)
        sent_at = lenient_datetime(document.get("sentAt"))
        context = document.get("context")
        batch_context = context if isinstance(context, dict) else {}
    else:
        messages, sent_at, batch_context = [document], None, {}
    mapped = candidates(messages, call, received_at, sent_at, batch_context)
    if resolved.key.use_context_ip:
        for index, (message, candidate) in enumerate(zip(messages, mapped, strict=True)):
            address = context_ip(message, batch_context)
            if address is not None:
                mapped[index] = candidate._replace(client_ip=collector.reported_ip(address))
    return resolved, mapped


@router.post(
    "/batch",
    response_model=SegmentResult,
    summary="Segment: a batch of calls",
    openapi_extra=json_body(ref(SegmentBatch)),
    responses=_RESPONSES,
)
async def batch(request: Request, intake: OptionalIntakeDep) -> Response:
    return await _handle(request, intake, None)


def _single(call: str) -> None:
    async def endpoint(request: Request, intake: OptionalIntakeDep) -> Response:
        return await _handle(request, intake, call)

    endpoint.__name__ = f"segment_{call}"
    router.add_api_route(
        f"/{call}",
        endpoint,
        methods=["POST"],
        response_model=SegmentResult,
        summary=f"Segment: one {call} call",
        openapi_extra=json_body(ref(SegmentMessage)),
        responses=_RESPONSES,
    )


for _call in CALL_TYPES:
    _single(_call)
