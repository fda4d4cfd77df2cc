"""Routes that popular trackers use as they are, beside the Segment HTTP Tracking API.

* Segment's analytics-next and mobile SDKs: the short paths `/v1/t|p|i|g|a|s`, the batch
  path `/v1/b` (text/plain bodies, the write key in Basic auth and/or the body's
  `writeKey`), and the settings document `GET /v1/projects/{writeKey}/settings`.
* RudderStack's JavaScript SDK v3: `GET /sourceConfig`, its beacon `POST
  /beacon/v1/batch?writeKey=` (its other paths are Segment's).
* Snowplow trackers: `POST /com.snowplowanalytics.snowplow/tp2` and `GET /i`, at the root
  or below `/snowplow/{writeKey}`. Snowplow has no write key: the path names one, else the
  usual headers or `?write_key=`, else the events' app id (`aid`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from ingest_api.auth import Client, check_origin, presented_key, resolve_client
from ingest_api.collector import Collector, now
from ingest_api.config import Settings
from ingest_api.deps import CollectorDep, OptionalIntake, OptionalIntakeDep
from ingest_api.enrichment import client_address
from ingest_api.errors import ApiError
from ingest_api.intake import Candidate, check_count, load_json
from ingest_api.openapi import COMMON_ERRORS, SegmentResult, error, json_body, ref
from ingest_api.pixel import PIXEL
from ingest_api.routes.segment import handle_segment
from ingest_api.sdk_settings import (
    SEGMENT_SHORT_PATHS,
    SNOWPLOW_PREFIX,
    rudderstack_source_config,
    segment_settings,
)
from ingest_api.segment import MappingError, SegmentBatch, SegmentMessage
from ingest_api.snowplow import post_payloads, query_payload, to_event

router = APIRouter(tags=["trackers"])

_SEGMENT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error("Malformed JSON, or a body that is not a batch/message object"),
    **COMMON_ERRORS,
}
_NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate", "Expires": "0"}
_DOCUMENT = {"content": {"application/json": {"schema": {"type": "object"}}}}


# --- Segment: short paths, /v1/b and the settings document -----------------------------------


def _short_path(letter: str, call: str) -> None:
    async def endpoint(request: Request, intake: OptionalIntakeDep) -> Response:
        return await handle_segment(request, intake, call)

    endpoint.__name__ = f"segment_short_{call}"
    router.add_api_route(
        f"/v1/{letter}",
        endpoint,
        methods=["POST"],
        response_model=SegmentResult,
        summary=f"Segment analytics-next: one {call} call (`/v1/{letter}`)",
        openapi_extra=json_body(ref(SegmentMessage)),
        responses=_SEGMENT_ERRORS,
    )


for _letter, _call in SEGMENT_SHORT_PATHS.items():
    _short_path(_letter, _call)


@router.post(
    "/v1/b",
    response_model=SegmentResult,
    summary="Segment analytics-next (batching) and mobile SDKs: a batch of calls",
    openapi_extra=json_body(ref(SegmentBatch)),
    responses=_SEGMENT_ERRORS,
)
async def segment_short_batch(request: Request, intake: OptionalIntakeDep) -> Response:
    return await handle_segment(request, intake, None)


def public_base_url(request: Request, settings: Settings, collector: Collector) -> str:
    """Where SDKs reach this collector: INGEST_PUBLIC_URL, else the request's own scheme
    and host (the forwarded ones when a trusted proxy sent the request)."""
    if settings.ingest_public_url:
        return settings.ingest_public_url.rstrip("/")
    headers = request.headers
    scheme, host = request.url.scheme, headers.get("host") or request.url.netloc
    peer = request.client.host if request.client else None
    address = client_address(peer, None, collector.trusted) if peer else None
    if address is not None and any(address in network for network in collector.trusted):
        forwarded_proto = headers.get("x-forwarded-proto", "").split(",")[0].strip()
        forwarded_host = headers.get("x-forwarded-host", "").split(",")[0].strip()
        scheme = forwarded_proto if forwarded_proto in ("http", "https") else scheme
        host = forwarded_host or host
    return f"{scheme}://{host}"


def _document_client(request: Request, settings: Settings, key: str | None) -> Client:
    """The key a configuration request names; an unknown one is a 404 (no such document)."""
    try:
        client = resolve_client(key, settings)
    except ApiError as exc:
        raise ApiError(404, exc.code, f"no configuration: {exc.message}") from exc
    check_origin(request, client)
    return client


@router.get(
    "/v1/projects/{write_key}/settings",
    summary="Segment: the settings analytics-next loads from its cdnURL",
    description="Names this collector as the Segment.io destination's apiHost, so "
    "`cdnURL: <collector>` alone points analytics-next here.",
    responses={
        200: {"description": "The settings document", **_DOCUMENT},
        403: error("The request's Origin is not allowed for this write key"),
        404: error("Unknown write key"),
    },
)
async def segment_project_settings(
    write_key: str, request: Request, collector: CollectorDep
) -> Response:
    settings = collector.settings
    _document_client(request, settings, write_key)
    document = segment_settings(write_key, public_base_url(request, settings, collector))
    return Response(
        orjson.dumps(document),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )


# --- RudderStack: source config and beacon ---------------------------------------------------


@router.get(
    "/sourceConfig",
    summary="RudderStack JavaScript SDK v3: the source configuration (configUrl)",
    description="The write key comes as `?writeKey=` (or Basic auth, as the SDK also sends).",
    responses={
        200: {"description": "An enabled source without destinations", **_DOCUMENT},
        403: error("The request's Origin is not allowed for this write key"),
        404: error("Missing or unknown write key"),
    },
    openapi_extra={
        "parameters": [{"name": "writeKey", "in": "query", "schema": {"type": "string"}}]
    },
)
@router.get("/sourceConfig/", include_in_schema=False)
async def rudderstack_config(request: Request, collector: CollectorDep) -> Response:
    key = request.query_params.get("writeKey") or presented_key(
        request.headers, request.query_params
    )
    client = _document_client(request, collector.settings, key)
    return Response(
        orjson.dumps(rudderstack_source_config(client.source)), media_type="application/json"
    )


@router.post(
    "/beacon/v1/batch",
    response_model=SegmentResult,
    summary="RudderStack: a batch sent with navigator.sendBeacon (`?writeKey=`)",
    openapi_extra={
        **json_body(ref(SegmentBatch)),
        "parameters": [{"name": "writeKey", "in": "query", "schema": {"type": "string"}}],
    },
    responses=_SEGMENT_ERRORS,
)
async def rudderstack_beacon(request: Request, collector: CollectorDep) -> Response:
    # ?writeKey=, else the usual places; without either, the body's writeKey.
    key = request.query_params.get("writeKey") or presented_key(
        request.headers, request.query_params
    )
    client = None
    if key:
        client = resolve_client(key, collector.settings)
        check_origin(request, client)
    return await handle_segment(request, OptionalIntake(client, collector), None)


# --- Snowplow tracker protocol v2 ------------------------------------------------------------

_TP2 = "/com.snowplowanalytics.snowplow/tp2"
_PAYLOAD_DATA_BODY = {
    "type": "object",
    "required": ["schema", "data"],
    "properties": {
        "schema": {
            "type": "string",
            "pattern": r"^iglu:com\.snowplowanalytics\.snowplow/payload_data/"
            r"jsonschema/1-0-[0-9]+$",
        },
        "data": {
            "type": "array",
            "minItems": 1,
            "maxItems": 500,
            "items": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
}


def _snowplow_client(
    request: Request, settings: Settings, path_key: str | None, payloads: list[Any]
) -> tuple[Client, bool]:
    """(client, whether the key is the events' app id)."""
    key = path_key or presented_key(request.headers, request.query_params)
    from_app_id = False
    if key is None:
        first = payloads[0] if payloads else None
        app_id = first.get("aid") if isinstance(first, dict) else None
        key, from_app_id = (app_id if isinstance(app_id, str) else None), True
    client = resolve_client(key, settings)
    check_origin(request, client)
    return client, from_app_id


def _snowplow_candidates(
    payloads: list[Any], received_at: datetime, app_id_key: str | None
) -> list[Candidate]:
    result = []
    for payload in payloads:
        if (
            app_id_key is not None
            and isinstance(payload, dict)
            and payload.get("aid") != app_id_key
        ):
            reason = "aid differs from the app id that named this request's write key"
            result.append(Candidate(payload, None, None, ("invalid", reason)))
            continue
        try:
            event, sent_at = to_event(payload, received_at, app_id_is_key=app_id_key is not None)
        except MappingError as exc:
            result.append(Candidate(payload, None, None, ("invalid", str(exc))))
            continue
        result.append(Candidate(payload, event, sent_at))
    return result


async def _snowplow_post(request: Request, collector: Collector, path_key: str | None) -> Response:
    received_at = now()
    body = await collector.read_body(request)
    try:
        payloads = post_payloads(load_json(body))
    except MappingError as exc:
        raise ApiError(400, "invalid_body", str(exc)) from exc
    del body
    check_count(len(payloads), collector.limits)
    client, from_app_id = _snowplow_client(request, collector.settings, path_key, payloads)
    app_id_key = payloads[0].get("aid") if from_app_id else None
    candidates = _snowplow_candidates(payloads, received_at, app_id_key)
    outcome = await collector.ingest(request, client, received_at, candidates, "snowplow")
    result = {"success": not outcome.rejected, **outcome.result()}
    return Response(orjson.dumps(result), media_type="application/json")


async def _snowplow_get(request: Request, collector: Collector, path_key: str | None) -> Response:
    received_at = now()
    payload = query_payload(request.query_params.multi_items())
    client, from_app_id = _snowplow_client(request, collector.settings, path_key, [payload])
    app_id_key = payload.get("aid") if from_app_id else None
    candidates = _snowplow_candidates([payload], received_at, app_id_key)
    # As Snowplow's own collector: the pixel whatever the event was (a refused one is in
    # the dead-letter topic); errors are for the request itself (key, limits, Kafka).
    await collector.ingest(request, client, received_at, candidates, "snowplow")
    return Response(PIXEL, media_type="image/gif", headers=_NO_CACHE)


_SNOWPLOW_POST = {
    "response_model": SegmentResult,
    "summary": "Snowplow tracker protocol v2: a payload_data batch",
    "description": "Each event's fields as the trackers send them (`e`, `eid`, `duid`, ...). "
    "200 once handled; events that cannot be mapped are named in `rejected`.",
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _PAYLOAD_DATA_BODY}},
        }
    },
    "responses": {400: error("Not a payload_data document"), **COMMON_ERRORS},
}
_SNOWPLOW_GET = {
    "summary": "Snowplow tracker protocol v2: one event in the query string (a pixel)",
    "description": "Answers a 1x1 GIF; an event that cannot be mapped goes to the "
    "dead-letter topic.",
    "response_class": Response,
    "responses": {
        200: {"content": {"image/gif": {}}, "description": "The request was handled"},
        **COMMON_ERRORS,
    },
    "openapi_extra": {
        "parameters": [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in ("e", "eid", "aid", "uid", "duid", "sid", "url", "dtm", "stm")
        ]
    },
}


@router.post(_TP2, **_SNOWPLOW_POST)  # type: ignore[arg-type]
async def snowplow_post(request: Request, collector: CollectorDep) -> Response:
    return await _snowplow_post(request, collector, None)


@router.post(SNOWPLOW_PREFIX + "/{write_key}" + _TP2, **_SNOWPLOW_POST)  # type: ignore[arg-type]
async def snowplow_post_with_key(
    write_key: str, request: Request, collector: CollectorDep
) -> Response:
    return await _snowplow_post(request, collector, write_key)


@router.get("/i", **_SNOWPLOW_GET)  # type: ignore[arg-type]
async def snowplow_get(request: Request, collector: CollectorDep) -> Response:
    return await _snowplow_get(request, collector, None)


@router.get(SNOWPLOW_PREFIX + "/{write_key}/i", **_SNOWPLOW_GET)  # type: ignore[arg-type]
async def snowplow_get_with_key(
    write_key: str, request: Request, collector: CollectorDep
) -> Response:
    return await _snowplow_get(request, collector, write_key)
