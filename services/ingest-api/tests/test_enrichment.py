from datetime import UTC, datetime, timedelta

from clickstream_common.schema import Event
from ingest_api.auth import source_for_key
from ingest_api.enrichment import corrected_event_time, enrich

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TOL = timedelta(seconds=2)
MAX = timedelta(days=7)


def test_small_offsets_are_network_delay_and_not_applied() -> None:
    assert corrected_event_time(T0, T0, T0 + timedelta(seconds=1), TOL, MAX) == T0


def test_device_clock_offset_is_applied() -> None:
    # The device clock runs 10 minutes slow: its times are shifted forward by 10 minutes.
    sent = T0 + timedelta(minutes=1)
    received = sent + timedelta(minutes=10)
    assert corrected_event_time(T0, sent, received, TOL, MAX) == T0 + timedelta(minutes=10)


def test_absurd_clocks_are_not_trusted() -> None:
    sent = T0 - timedelta(days=400)
    assert corrected_event_time(T0, sent, T0, TOL, MAX) == T0


def test_enrich_keeps_fields_and_flags_future_events() -> None:
    event = Event.model_validate(
        {"event_type": "click", "timestamp": (T0 + timedelta(hours=1)).isoformat(), "user_id": "u1"}
    )
    enriched = enrich(event, source="web", received_at=T0, sent_at=None, tolerance=TOL, maximum=MAX)
    assert enriched.event_id
    assert enriched.timestamp == event.timestamp
    assert enriched.future_dated
    assert enriched.user_key == "u1"


def test_write_keys_map_to_sources() -> None:
    keys = {"k1": "web", "k2": "ios"}
    assert source_for_key("k2", keys) == "ios"
    assert source_for_key("nope", keys) is None
