"""The pixel: an event from a query string."""

from datetime import UTC, datetime

from ingest_api.pixel import EVENT_FIELDS, event_from_query

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_pixel_query_becomes_an_event() -> None:
    event = event_from_query(
        [
            ("write_key", "k"),
            ("anonymous_id", "a1"),
            ("event_type", "email_open"),
            ("p.campaign", "spring"),
            ("properties", '{"list": "vip"}'),
            ("price", "9.5"),
            ("cb", "123"),
        ],
        T0,
    )
    assert event == {
        "anonymous_id": "a1",
        "event_type": "email_open",
        "price": "9.5",
        "properties": {"list": "vip", "campaign": "spring"},
        "timestamp": T0.isoformat(),
    }
    assert event_from_query([("user_id", "u")], T0)["event_type"] == "page_view"


def test_only_event_fields_properties_and_p_pairs_are_read() -> None:
    event = event_from_query(
        [("user_id", "u"), ("user_id", "second"), ("properties", "[1]"), ("p.", "x")], T0
    )
    assert event["user_id"] == "u"  # the first value of a repeated parameter
    assert event["properties"] == [1]  # left for validation to refuse
    assert "timestamp" in EVENT_FIELDS and "properties" not in EVENT_FIELDS
