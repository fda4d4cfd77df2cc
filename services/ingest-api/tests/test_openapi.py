"""The OpenAPI document derives its rules from the shared schema and from Settings."""

from __future__ import annotations

from typing import Any

from clickstream_common.schema import EVENT_TYPE_PATTERN, QUANTITY_MAX, USER_KEY_FIELDS, Event
from ingest_api.config import Settings
from ingest_api.main import create_app
from ingest_api.pixel import EVENT_FIELDS


def document(**settings: Any) -> dict[str, Any]:
    openapi: dict[str, Any] = create_app(Settings(**settings)).openapi()
    return openapi


def test_the_request_cap_comes_from_settings() -> None:
    schemas = document(ingest_max_events_per_request=77)["components"]["schemas"]
    assert schemas["EventBatch"]["properties"]["events"]["maxItems"] == 77
    assert schemas["SegmentBatch"]["properties"]["batch"]["maxItems"] == 77
    assert [list(rule["required"]) for rule in schemas["Event"]["anyOf"]] == [
        [name] for name in USER_KEY_FIELDS
    ]


def test_pixel_parameters_are_the_event_fields_with_their_rules() -> None:
    assert set(EVENT_FIELDS) == set(Event.model_fields) - {"properties", "context"}
    operation = document()["paths"]["/v1/pixel.gif"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert set(parameters) == {"write_key", "properties", *EVENT_FIELDS}
    schemas = {name: parameters[name]["schema"] for name in EVENT_FIELDS}
    assert (schemas["quantity"]["type"], schemas["quantity"]["maximum"]) == (
        "integer",
        QUANTITY_MAX,
    )
    assert schemas["event_type"]["pattern"] == EVENT_TYPE_PATTERN
    assert schemas["event_type"]["default"] == "page_view"
    assert schemas["timestamp"]["format"] == "date-time"
    # Each bound is the model's own, read from its JSON schema.
    model = Event.model_json_schema()["properties"]
    for name in ("price", "revenue", "currency", "page_url", "event_id", "user_id"):
        (rule,) = [option for option in model[name]["anyOf"] if option.get("type") != "null"]
        assert rule.items() <= schemas[name].items(), name


def test_every_core_route_is_documented_with_the_security_schemes() -> None:
    paths = document()["paths"]
    for path in ("/v1/events", "/v1/batch", "/v1/track", "/v1/alias", "/v1/pixel.gif"):
        (operation,) = paths[path].values()
        assert {"bearer": []} in operation["security"], path
    assert "security" not in paths["/v1/tracker.js"]["get"]
