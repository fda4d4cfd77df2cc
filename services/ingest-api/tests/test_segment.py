from datetime import UTC, datetime

import pytest

from clickstream_common.schema import (
    EVENT_ID_MAX_LENGTH,
    PRICE_MAX,
    QUANTITY_MAX,
    REVENUE_MAX_ABS,
    SCREEN_SIZE_MAX,
    SEARCH_QUERY_MAX_LENGTH,
    SHORT_TEXT_MAX_LENGTH,
)
from ingest_api.segment import MappingError, candidates, event_type_of, snake_case, to_event

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Product Viewed", "product_view"),
        ("Product Added", "add_to_cart"),
        ("Product Removed", "remove_from_cart"),
        ("Checkout Started", "checkout"),
        ("Order Completed", "purchase"),
        ("Products Searched", "search"),
        ("order completed", "purchase"),
        ("Signed Up", "signed_up"),
        ("  Video -- Played!! ", "video_played"),
        ("3D View", "event_3d_view"),
    ],
)
def test_event_names(name: str, expected: str) -> None:
    assert event_type_of(name) == expected


def test_names_without_letters_are_refused() -> None:
    with pytest.raises(MappingError):
        snake_case("!!!")
    with pytest.raises(MappingError):
        event_type_of(None)


def test_track_maps_ids_times_commerce_fields_and_context() -> None:
    message = {
        "type": "track",
        "event": "Product Added",
        "messageId": "m-1",
        "userId": 42,
        "anonymousId": "anon",
        "originalTimestamp": "2026-11-27T11:59:00Z",
        "timestamp": "2026-11-27T11:59:30Z",
        "sentAt": "2026-11-27T11:59:50Z",
        "properties": {
            "product_id": "p-9",
            "price": 19.99,
            "quantity": 2,
            "currency": "eur",
            "url": "https://s.example/p-9",
            "colour": "red",
        },
        "context": {
            "userAgent": "UA",
            "locale": "de-DE",
            "screen": {"width": 390, "height": 844},
            "app": {"name": "Shop", "version": "1.2"},
            "device": {"manufacturer": "Apple", "model": "iPhone15,2"},
            "os": {"name": "iOS", "version": "17.1"},
            "page": {"referrer": "https://ref.example/"},
        },
    }
    event, sent_at = to_event(message, "track", T0, None)
    assert sent_at == datetime(2026, 11, 27, 11, 59, 50, tzinfo=UTC)
    assert event == {
        "event_id": "m-1",
        "user_id": "42",
        "anonymous_id": "anon",
        "timestamp": "2026-11-27T11:59:00Z",
        "event_type": "add_to_cart",
        "product_id": "p-9",
        "price": 19.99,
        "quantity": 2,
        "currency": "EUR",
        "page_url": "https://s.example/p-9",
        "referrer": "https://ref.example/",
        "properties": {**message["properties"], "segment_event": "Product Added"},
        "context": {
            "user_agent": "UA",
            "locale": "de-DE",
            "screen_width": 390,
            "screen_height": 844,
            "app_name": "Shop",
            "app_version": "1.2",
            "device_manufacturer": "Apple",
            "device_model": "iPhone15,2",
            "os_name": "iOS",
            "os_version": "17.1",
        },
        # The whole context, kept as it came.
        "raw_context": message["context"],
    }


def test_raw_context_keeps_every_key_but_the_address() -> None:
    context = {
        "ip": "203.0.113.9",
        "device": {"id": "device-1", "type": "android"},
        "campaign": {"name": "spring"},
        "custom": {"experiment": "b"},
    }
    event, _ = to_event({"userId": "u", "event": "X", "context": context}, "track", T0, None)
    assert event["raw_context"] == {k: v for k, v in context.items() if k != "ip"}


def test_other_calls() -> None:
    page, _ = to_event(
        {"userId": "u", "name": "Home", "properties": {"url": "https://s.example/"}},
        "page",
        T0,
        None,
    )
    assert page["event_type"] == "page_view" and page["page_url"] == "https://s.example/"
    assert page["properties"]["name"] == "Home"
    identify, sent_at = to_event({"userId": "u", "traits": {"plan": "pro"}}, "identify", T0, T0)
    # No client time at all: the receive time, and nothing to correct.
    assert identify["timestamp"] == T0.isoformat() and sent_at is None
    assert identify["properties"] == {"traits": {"plan": "pro"}}
    rudder, _ = to_event(
        {"userId": "u", "context": {"traits": {"plan": "pro", "email": "e"}}, "traits": {"x": 1}},
        "identify",
        T0,
        None,
    )
    assert rudder["properties"] == {"traits": {"plan": "pro", "email": "e", "x": 1}}
    group, _ = to_event({"userId": "u", "groupId": "g"}, "group", T0, None)
    assert group["properties"] == {"group_id": "g", "traits": {}}
    alias, _ = to_event({"userId": "u", "previousId": "a"}, "alias", T0, None)
    assert alias["event_type"] == "alias" and alias["properties"] == {"previous_id": "a"}
    screen, _ = to_event({"anonymousId": "a", "name": "Cart"}, "screen", T0, None)
    assert screen["event_type"] == "screen_view"


def test_ill_typed_commerce_values_stay_in_properties_only() -> None:
    event, _ = to_event(
        {"userId": "u", "event": "Order Completed", "properties": {"revenue": "lots"}},
        "track",
        T0,
        None,
    )
    assert "revenue" not in event and event["properties"]["revenue"] == "lots"


def test_batch_messages_are_mapped_one_by_one_with_batch_context() -> None:
    mapped = candidates(
        [
            {"type": "track", "event": "Signed Up", "userId": "u", "timestamp": "2026-11-27"},
            {"type": "teleport", "userId": "u"},
            "nope",
            {
                "type": "track",
                "userId": "u",
                "sentAt": "yesterday",
                "event": "X",
                "timestamp": "2026-11-27",
            },
        ],
        None,
        T0,
        T0,
        {"locale": "fr-FR"},
    )
    assert mapped[0].error is None and mapped[0].event["context"] == {"locale": "fr-FR"}
    assert mapped[0].sent_at == T0
    assert "context" not in mapped[0].original  # the dead-letter topic keeps what was sent
    assert mapped[1].error is not None and "teleport" in mapped[1].error[1]
    assert mapped[2].error == ("not_an_object", "message must be an object")
    # An unreadable sentAt only means no clock correction (as Segment treats it).
    assert mapped[3].error is None and mapped[3].sent_at == T0


def test_context_ip_reads_the_message_then_the_batch() -> None:
    from ipaddress import ip_address

    from ingest_api.segment import context_ip

    assert context_ip({"context": {"ip": " 203.0.113.9 "}}, {}) == ip_address("203.0.113.9")
    assert context_ip({}, {"ip": "2001:db8::1"}) == ip_address("2001:db8::1")
    assert context_ip({"context": {"ip": "2001:db8::1"}}, {"ip": "203.0.113.9"}) == ip_address(
        "2001:db8::1"
    )
    for message in ({"context": {"ip": "not an address"}}, {"context": {"ip": 7}}, "x", {}):
        assert context_ip(message, {}) is None


def test_values_outside_the_schemas_bounds_stay_in_properties_only() -> None:
    properties = {
        "price": PRICE_MAX * 2,
        "quantity": QUANTITY_MAX + 1,
        "revenue": -REVENUE_MAX_ABS * 2,
        "currency": "EUR\n",
        "query": "q" * (SEARCH_QUERY_MAX_LENGTH + 10),
    }
    message = {
        "userId": "u" * (SHORT_TEXT_MAX_LENGTH + 1),
        "messageId": "m" * (EVENT_ID_MAX_LENGTH + 1),
        "event": "Order Completed",
        "properties": properties,
        "context": {"screen": {"width": SCREEN_SIZE_MAX + 1, "height": True}},
    }
    event, _ = to_event(message, "track", T0, None)
    for field in ("price", "quantity", "revenue", "currency", "context"):
        assert field not in event, field
    assert len(event["search_query"]) == SEARCH_QUERY_MAX_LENGTH
    assert len(event["user_id"]) == SHORT_TEXT_MAX_LENGTH
    assert len(event["event_id"]) == EVENT_ID_MAX_LENGTH
    assert event["properties"]["price"] == PRICE_MAX * 2
    inside, _ = to_event(
        {**message, "properties": {"price": PRICE_MAX, "quantity": QUANTITY_MAX, "total": 5}},
        "track",
        T0,
        None,
    )
    assert (inside["price"], inside["quantity"], inside["revenue"]) == (PRICE_MAX, QUANTITY_MAX, 5)
