"""Snowplow tracker protocol v2 -> native events, on payloads shaped as the trackers send them
(the Python tracker 1.1 and the browser tracker 4.x with its snowplow_ecommerce plugin)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from clickstream_common.schema import Event
from ingest_api.segment import MappingError
from ingest_api.snowplow import entities, post_payloads, query_payload, schema_parts, to_event

RECEIVED = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DTM = "1795867200000"  # 2026-11-28T12:00:00Z
ECOMMERCE = "iglu:com.snowplowanalytics.snowplow.ecommerce"


def b64(document: Any) -> str:
    """As the browser tracker encodes ue_px / cx: URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(orjson.dumps(document)).decode().rstrip("=")


def unstruct(schema: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
        "data": {"schema": schema, "data": data},
    }


def contexts(*found: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
        "data": [{"schema": s, "data": d} for s, d in found],
    }


def base(**fields: str) -> dict[str, str]:
    return {
        "eid": "6f1b0c1e-0000-4000-8000-000000000001",
        "duid": "d-1",
        "sid": "s-1",
        "p": "web",
        "tv": "js-4.10.1",
        "aid": "shop",
        "dtm": DTM,
        "stm": "1795867201000",
        "url": "https://shop.example/p/1",
        "ua": "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0",
        "lang": "en-GB",
        "res": "1920x1080",
        **fields,
    }


def mapped(payload: dict[str, Any], **options: Any) -> dict[str, Any]:
    event, _ = to_event(payload, RECEIVED, **options)
    Event.model_validate(event)  # whatever the mapping gives must be a valid native event
    return event


def test_page_view_maps_ids_times_and_context() -> None:
    event, sent_at = to_event(
        base(e="pv", page="Red shoes", uid="u-1", refr="https://a.b/"), RECEIVED
    )
    assert event["event_type"] == "page_view"
    assert (event["event_id"], event["user_id"], event["anonymous_id"], event["session_id"]) == (
        "6f1b0c1e-0000-4000-8000-000000000001",
        "u-1",
        "d-1",
        "s-1",
    )
    assert event["timestamp"] == "2026-11-28T12:00:00+00:00"
    assert sent_at == datetime(2026, 11, 28, 12, 0, 1, tzinfo=UTC)
    assert (event["page_url"], event["referrer"]) == ("https://shop.example/p/1", "https://a.b/")
    assert event["properties"] == {"title": "Red shoes"}
    assert event["context"] == {
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0",
        "locale": "en-GB",
        "screen_width": 1920,
        "screen_height": 1080,
        "app_name": "shop",
    }
    assert event["raw_context"] == {"fields": {"p": "web", "tv": "js-4.10.1", "aid": "shop"}}
    Event.model_validate(event)


def test_true_timestamp_wins_and_needs_no_correction() -> None:
    event, sent_at = to_event(base(e="pv", ttm="1795867100000"), RECEIVED)
    assert event["timestamp"] == "2026-11-28T11:58:20+00:00"
    assert sent_at is None


def test_without_any_device_time_the_receive_time_is_used() -> None:
    payload = base(e="pv")
    del payload["dtm"]
    event, sent_at = to_event(payload, RECEIVED)
    assert event["timestamp"] == RECEIVED.isoformat()
    assert sent_at is None


def test_app_id_used_as_write_key_is_not_recorded() -> None:
    event = mapped(base(e="pv"), app_id_is_key=True)
    assert "app_name" not in event["context"]
    assert "aid" not in event["raw_context"]["fields"]


def test_network_user_id_stands_in_for_a_missing_domain_user_id() -> None:
    payload = base(e="pv", nuid="n-9")
    del payload["duid"]
    assert mapped(payload)["anonymous_id"] == "n-9"


def test_structured_event_is_named_after_its_action() -> None:
    event = mapped(base(e="se", se_ca="Media", se_ac="Play Video", se_la="intro", se_va="2.5"))
    assert event["event_type"] == "play_video"
    assert event["properties"] == {
        "action": "Play Video",
        "category": "Media",
        "label": "intro",
        "value": 2.5,
    }


def test_structured_event_without_action_is_refused() -> None:
    with pytest.raises(MappingError, match="se_ac"):
        to_event(base(e="se", se_ca="Media"), RECEIVED)


def test_page_ping_keeps_its_offsets() -> None:
    event = mapped(base(e="pp", pp_mix="0", pp_max="10", pp_miy="5", pp_may="900"))
    assert event["event_type"] == "page_ping"
    assert event["properties"] == {"mix": 0, "max": 10, "miy": 5, "may": 900}


def test_legacy_transaction_and_item() -> None:
    order = mapped(base(e="tr", tr_id="o-1", tr_tt="59.90", tr_cu="eur", tr_tx="9.5", tr_sh="0"))
    assert (order["event_type"], order["revenue"], order["currency"]) == ("purchase", 59.9, "EUR")
    assert order["properties"] == {"order_id": "o-1", "tax": 9.5, "shipping": 0.0}
    item = mapped(base(e="ti", ti_id="o-1", ti_sk="sku-1", ti_nm="Shoe", ti_pr="29.95", ti_qu="2"))
    assert item["event_type"] == "transaction_item"
    assert (item["product_id"], item["price"], item["quantity"]) == ("sku-1", 29.95, 2)
    assert item["properties"] == {"order_id": "o-1", "product_name": "Shoe"}


PRODUCT = {"id": "p-1", "name": "Red shoe", "category": "shoes", "price": 59.9, "currency": "EUR"}


@pytest.mark.parametrize(
    ("action", "found", "expected_type"),
    [
        ({"type": "product_view"}, [("product", PRODUCT)], "product_view"),
        (
            {"type": "add_to_cart"},
            [
                ("product", {**PRODUCT, "quantity": 2}),
                ("cart", {"total_value": 119.8, "currency": "EUR"}),
            ],
            "add_to_cart",
        ),
        (
            {"type": "remove_from_cart"},
            [("product", PRODUCT), ("cart", {"total_value": 0})],
            "remove_from_cart",
        ),
        ({"type": "checkout_step"}, [("checkout_step", {"step": 1})], "checkout"),
        ({"type": "checkout_step"}, [("checkout_step", {"step": 2})], "checkout_step"),
        (
            {"type": "list_view", "name": "Shoes"},
            [("product", PRODUCT), ("product", PRODUCT)],
            "list_view",
        ),
        ({"type": "trns_error"}, [], "trns_error"),
    ],
)
def test_ecommerce_actions(
    action: dict[str, Any], found: list[tuple[str, dict[str, Any]]], expected_type: str
) -> None:
    payload = base(
        e="ue",
        ue_px=b64(unstruct(f"{ECOMMERCE}/snowplow_ecommerce_action/jsonschema/1-0-2", action)),
        cx=b64(contexts(*((f"{ECOMMERCE}/{name}/jsonschema/1-0-0", d) for name, d in found))),
    )
    event = mapped(payload)
    assert event["event_type"] == expected_type
    assert event["properties"]["ecommerce_action"] == action
    products = [d for name, d in found if name == "product"]
    if len(products) == 1:
        assert (event["product_id"], event["price"], event["currency"]) == ("p-1", 59.9, "EUR")
        assert event["properties"]["product_name"] == "Red shoe"
    else:
        assert "product_id" not in event
    assert event["raw_context"].get("contexts", []) == [
        {"schema": f"{ECOMMERCE}/{name}/jsonschema/1-0-0", "data": d} for name, d in found
    ]


def test_ecommerce_transaction_is_one_purchase_with_the_order_total() -> None:
    products = [{**PRODUCT, "quantity": 1}, {**PRODUCT, "id": "p-2", "quantity": 2}]
    transaction = {
        "transaction_id": "o-9",
        "revenue": 179.7,
        "currency": "EUR",
        "payment_method": "card",
        "total_quantity": 3,
    }
    payload = base(
        e="ue",
        ue_pr=orjson.dumps(
            unstruct(
                f"{ECOMMERCE}/snowplow_ecommerce_action/jsonschema/1-0-2", {"type": "transaction"}
            )
        ).decode(),
        co=orjson.dumps(
            contexts(
                *((f"{ECOMMERCE}/product/jsonschema/1-0-0", p) for p in products),
                (f"{ECOMMERCE}/transaction/jsonschema/1-0-0", transaction),
            )
        ).decode(),
    )
    event = mapped(payload)
    assert (event["event_type"], event["revenue"], event["currency"]) == ("purchase", 179.7, "EUR")
    assert event["properties"]["order_id"] == "o-9"
    assert event["properties"]["items"] == 3
    assert event["properties"]["products"] == products
    assert "product_id" not in event  # two products: the per-product figures are not guessed


def test_link_click_and_site_search_map_to_standard_types() -> None:
    click = mapped(
        base(
            e="ue",
            ue_px=b64(
                unstruct(
                    "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1",
                    {"targetUrl": "https://x.example/", "elementId": "buy"},
                )
            ),
        )
    )
    assert click["event_type"] == "click"
    assert click["properties"] == {"targetUrl": "https://x.example/", "elementId": "buy"}
    search = mapped(
        base(
            e="ue",
            ue_px=b64(
                unstruct(
                    "iglu:com.snowplowanalytics.snowplow/site_search/jsonschema/1-0-0",
                    {"terms": ["red", "shoes"], "totalResults": 3},
                )
            ),
        )
    )
    assert (search["event_type"], search["search_query"]) == ("search", "red shoes")


def test_other_self_describing_events_are_custom_with_their_payload() -> None:
    schema = "iglu:com.acme/video-played/jsonschema/1-0-0"
    event = mapped(base(e="ue", ue_px=b64(unstruct(schema, {"seconds": 12}))))
    assert event["event_type"] == "video_played"
    assert event["properties"] == {"schema": schema, "data": {"seconds": 12}}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"e": "xx"}, "unsupported event kind"),
        ({"e": "ue", "ue_px": "%%%"}, "ue_px"),
        ({"e": "ue", "ue_pr": "{not json"}, "ue_pr is not JSON"),
        ({"e": "ue", "ue_pr": '{"data": 1}'}, "unstruct_event"),
        ({"e": "pv", "co": '{"data": 3}'}, "contexts document"),
    ],
)
def test_unreadable_events_are_refused_with_the_reason(fields: dict[str, str], reason: str) -> None:
    with pytest.raises(MappingError, match=reason):
        to_event(base(**fields), RECEIVED)


def test_request_bodies() -> None:
    body = {
        "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
        "data": [{}],
    }
    assert post_payloads(body) == [{}]
    for bad in ([], {"schema": "iglu:x/y/jsonschema/1-0-0", "data": []}, {**body, "data": {}}):
        with pytest.raises(MappingError):
            post_payloads(bad)
    assert query_payload([("e", "pv"), ("e", "se"), ("url", "u")]) == {"e": "pv", "url": "u"}


def test_helpers() -> None:
    assert schema_parts("iglu:com.acme/thing/jsonschema/1-0-0") == ("com.acme", "thing")
    assert schema_parts("nope") is None
    assert entities({}) == []
