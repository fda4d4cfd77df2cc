"""`GET /v1/pixel.gif` in the OpenAPI document (served by the core: `ingest_api.pixel`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from clickstream_common.schema import Event
from ingest_api.openapi import COMMON_ERRORS, error
from ingest_api.pixel import EVENT_FIELDS
from ingest_api.routes.collect import add_core_route

router = APIRouter(prefix="/v1", tags=["pixel"])


def parameter_schema(name: str) -> dict[str, Any]:
    """A query parameter's schema: the event field's own, from the shared schema model."""
    field = Event.model_json_schema()["properties"][name]
    schema = {k: v for k, v in field.items() if k not in ("anyOf", "default", "title")}
    for option in field.get("anyOf", ()):
        if option.get("type") != "null":
            schema.update(option)
    if name == "event_type":
        schema["default"] = "page_view"
    return schema


_PARAMETERS: list[dict[str, Any]] = [
    {"name": "write_key", "in": "query", "required": True, "schema": {"type": "string"}},
    *(
        {"name": name, "in": "query", "required": False, "schema": parameter_schema(name)}
        for name in EVENT_FIELDS
    ),
    {
        "name": "properties",
        "in": "query",
        "required": False,
        "description": "A JSON object; `p.<name>=<value>` parameters add string properties.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
]


add_core_route(
    router,
    "/pixel.gif",
    "GET",
    "pixel",
    summary="Record one event from the query string; answers a 1x1 GIF",
    description="For pages without JavaScript and for e-mail opens. `event_type` defaults to "
    "page_view and `timestamp` to the receive time; one of user_id or anonymous_id is needed "
    "(a rule the parameter schemas cannot express).",
    response_class=Response,
    responses={
        200: {"content": {"image/gif": {}}, "description": "The event is stored in Kafka"},
        400: error("The event is invalid (it went to the dead-letter topic)"),
        **COMMON_ERRORS,
    },
    openapi_extra={"parameters": _PARAMETERS},
)
