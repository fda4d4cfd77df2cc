from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from clickstream_common.lake import commit_marker_key, parse_commit_marker_key, processed_object_key
from clickstream_common.schema import (
    CURRENCY_PATTERN,
    EVENT_ID_MAX_LENGTH,
    PRICE_MAX,
    QUANTITY_MAX,
    REVENUE_MAX_ABS,
    URL_MAX_LENGTH,
    USER_KEY_FIELDS,
    EnrichedEvent,
    Event,
    LogicalType,
    columns_of,
    user_key_of,
)
from clickstream_common.tables import (
    EVENT_COUNTS_MINUTE,
    Dialect,
    create_table_sql,
    quote_identifier,
)


def test_event_requires_an_identity_and_names_the_problem() -> None:
    with pytest.raises(ValidationError, match="user_id or anonymous_id"):
        Event.model_validate({"event_type": "page_view", "timestamp": "2026-01-01T00:00:00Z"})


def test_naive_timestamps_are_utc() -> None:
    event = Event.model_validate(
        {"event_type": "click", "timestamp": "2026-01-01T10:00:00", "anonymous_id": "a"}
    )
    assert event.timestamp == datetime(2026, 1, 1, 10, tzinfo=UTC)


def test_unknown_fields_and_bad_values_are_rejected() -> None:
    with pytest.raises(ValidationError) as error:
        Event.model_validate(
            {"event_type": "Page View", "timestamp": "x", "anonymous_id": "a", "colour": 1}
        )
    fields = {e["loc"][0] for e in error.value.errors()}
    assert fields == {"event_type", "timestamp", "colour"}


def test_columns_are_derived_from_the_model() -> None:
    columns = {c.name: c for c in columns_of(EnrichedEvent)}
    assert columns["event_time"].type is LogicalType.TIMESTAMP
    assert not columns["event_time"].nullable
    assert columns["quantity"].type is LogicalType.LONG
    assert columns["properties"].type is LogicalType.JSON
    assert columns["context"].type is LogicalType.STRUCT
    assert "user_agent" in {c.name for c in columns["context"].children}
    # Every field of the model, in order, is a column.
    assert list(columns) == list(EnrichedEvent.model_fields)


def test_table_ddl_per_dialect() -> None:
    pg = create_table_sql(EVENT_COUNTS_MINUTE, Dialect.POSTGRES)
    assert '"window_start" TIMESTAMPTZ NOT NULL' in pg
    assert 'PRIMARY KEY ("window_start", "event_type")' in pg
    rs = create_table_sql(EVENT_COUNTS_MINUTE, Dialect.REDSHIFT)
    assert rs.endswith('DISTSTYLE ALL\nSORTKEY ("window_start")')


def test_identifiers_are_always_quoted() -> None:
    assert quote_identifier("timestamp") == '"timestamp"'
    assert quote_identifier("event_id") == '"event_id"'
    assert quote_identifier('we"ird') == '"we""ird"'


def test_lake_keys_round_trip() -> None:
    key = commit_marker_key("event_counts_minute", 42)
    assert key == "processed/event_counts_minute/_commits/batch-000000000042.json"
    assert parse_commit_marker_key(key) == ("event_counts_minute", 42)
    assert parse_commit_marker_key(processed_object_key("x", "2026-01-01", "03", 1)) is None


def test_the_user_key_is_the_first_identity_present_and_blank_is_absent() -> None:
    base = {"event_type": "click", "timestamp": "2026-01-01T00:00:00Z"}
    both = EnrichedEvent.model_validate(
        {
            **base,
            "user_id": "u",
            "anonymous_id": "a",
            "event_id": "e",
            "source": "s",
            "received_at": "2026-01-01T00:00:00Z",
            "event_time": "2026-01-01T00:00:00Z",
        }
    )
    assert both.user_key == "u" == user_key_of("u", "a")
    # A blank user id is no user id: the key is the anonymous id, as COALESCE in SQL says.
    blank = Event.model_validate({**base, "user_id": "   ", "anonymous_id": "a"})
    assert blank.user_id is None
    assert user_key_of(blank.user_id, blank.anonymous_id) == "a"
    assert USER_KEY_FIELDS == ("user_id", "anonymous_id")
    with pytest.raises(ValidationError, match="user_id or anonymous_id"):
        Event.model_validate({**base, "user_id": " ", "anonymous_id": ""})


def test_field_bounds_are_the_named_constants() -> None:
    fields = Event.model_json_schema()["properties"]

    def rule(name: str) -> dict[str, object]:
        (found,) = [o for o in fields[name]["anyOf"] if o.get("type") != "null"]
        return found

    assert rule("currency")["pattern"] == CURRENCY_PATTERN
    assert rule("event_id")["maxLength"] == EVENT_ID_MAX_LENGTH
    assert rule("quantity")["maximum"] == QUANTITY_MAX
    assert rule("price")["maximum"] == PRICE_MAX
    assert rule("revenue")["minimum"] == -REVENUE_MAX_ABS
    assert rule("page_url")["maxLength"] == URL_MAX_LENGTH
