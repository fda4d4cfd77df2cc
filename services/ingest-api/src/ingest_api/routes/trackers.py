"""The trackers' paths in the OpenAPI document (served by the core: `ingest_api.trackers`).

The paths that name a write key (`/v1/projects/{write_key}/settings`,
`/snowplow/{write_key}/...`) are not on the fast path: FastAPI's router matches them and hands
them to the core.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ingest_api.openapi import COMMON_ERRORS, SegmentResult, error, json_body, ref
from ingest_api.routes.collect import add_core_route
from ingest_api.sdk_settings import SEGMENT_SHORT_PATHS, SNOWPLOW_PREFIX
from ingest_api.segment import SegmentBatch, SegmentMessage
from ingest_api.trackers import (
    RUDDERSTACK_BEACON,
    SEGMENT_SETTINGS,
    SNOWPLOW_GET,
    SNOWPLOW_POST,
)

router = APIRouter(tags=["trackers"])

_SEGMENT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error("Malformed JSON, or a body that is not a batch/message object"),
    **COMMON_ERRORS,
}
_DOCUMENT = {"content": {"application/json": {"schema": {"type": "object"}}}}
_WRITE_KEY_QUERY = {"name": "writeKey", "in": "query", "schema": {"type": "string"}}
# The core reads the key from the path itself; the document names the parameter.
_WRITE_KEY_PATH = {
    "name": "write_key",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
}

for _letter, _call in SEGMENT_SHORT_PATHS.items():
    add_core_route(
        router,
        f"/v1/{_letter}",
        "POST",
        f"segment_short_{_call}",
        response_model=SegmentResult,
        summary=f"Segment analytics-next: one {_call} call",
        openapi_extra=json_body(ref(SegmentMessage)),
        responses=_SEGMENT_ERRORS,
    )
add_core_route(
    router,
    "/v1/b",
    "POST",
    "segment_short_batch",
    response_model=SegmentResult,
    summary="Segment analytics-next (batching) and mobile SDKs: a batch of calls",
    openapi_extra=json_body(ref(SegmentBatch)),
    responses=_SEGMENT_ERRORS,
)
add_core_route(
    router,
    SEGMENT_SETTINGS,
    "GET",
    "segment_project_settings",
    summary="Segment: the settings analytics-next loads from its cdnURL",
    description="Names this collector as the Segment.io destination's apiHost "
    "(INGEST_PUBLIC_URL, else the request's host), so `cdnURL: <collector>` alone points "
    "analytics-next here.",
    responses={
        200: {"description": "The settings document", **_DOCUMENT},
        403: error("The request's Origin is not allowed for this write key"),
        404: error("Unknown write key"),
    },
    openapi_extra={"parameters": [_WRITE_KEY_PATH]},
)
add_core_route(
    router,
    "/sourceConfig",
    "GET",
    "rudderstack_source_config",
    summary="RudderStack JavaScript SDK v3: the source configuration (its configUrl)",
    description="The write key as `?writeKey=` or Basic auth, as the SDK sends both.",
    responses={
        200: {"description": "An enabled source without destinations", **_DOCUMENT},
        403: error("The request's Origin is not allowed for this write key"),
        404: error("Missing or unknown write key"),
    },
    openapi_extra={"parameters": [_WRITE_KEY_QUERY]},
)
# The SDK asks for `/sourceConfig/`: the same operation, not repeated in the document.
add_core_route(
    router, "/sourceConfig/", "GET", "rudderstack_source_config_slash", include_in_schema=False
)
add_core_route(
    router,
    RUDDERSTACK_BEACON,
    "POST",
    "rudderstack_beacon",
    response_model=SegmentResult,
    summary="RudderStack: a batch sent with navigator.sendBeacon (`?writeKey=`)",
    openapi_extra={**json_body(ref(SegmentBatch)), "parameters": [_WRITE_KEY_QUERY]},
    responses=_SEGMENT_ERRORS,
)

_PAYLOAD_DATA = {
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
_SNOWPLOW_POST: dict[str, Any] = {
    "response_model": SegmentResult,
    "summary": "Snowplow tracker protocol v2: a payload_data batch",
    "description": "Each event's fields as the trackers send them (`e`, `eid`, `duid`, ...). "
    "200 once handled; events that cannot be mapped are named in `rejected`. Below "
    "`/snowplow/{write_key}` the path names the write key; at the root a header, "
    "`?write_key=` or the events' app id (`aid`) does.",
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _PAYLOAD_DATA}},
        }
    },
    "responses": {400: error("Not a payload_data document"), **COMMON_ERRORS},
}
_SNOWPLOW_GET: dict[str, Any] = {
    "summary": "Snowplow tracker protocol v2: one event in the query string (a pixel)",
    "description": "Answers a 1x1 GIF; an event that cannot be mapped goes to the dead-letter "
    "topic.",
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


def _with_path_key(openapi: dict[str, Any]) -> dict[str, Any]:
    extra = openapi.get("openapi_extra", {})
    parameters = [_WRITE_KEY_PATH, *extra.get("parameters", [])]
    return {**openapi, "openapi_extra": {**extra, "parameters": parameters}}


add_core_route(router, SNOWPLOW_POST, "POST", "snowplow_post_root", **_SNOWPLOW_POST)
add_core_route(router, SNOWPLOW_GET, "GET", "snowplow_get_root", **_SNOWPLOW_GET)
_KEYED = SNOWPLOW_PREFIX + "/{write_key}"
add_core_route(
    router, _KEYED + SNOWPLOW_POST, "POST", "snowplow_post_keyed", **_with_path_key(_SNOWPLOW_POST)
)
add_core_route(
    router, _KEYED + SNOWPLOW_GET, "GET", "snowplow_get_keyed", **_with_path_key(_SNOWPLOW_GET)
)
