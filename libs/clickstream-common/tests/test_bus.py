"""The bus's record sizes: the collector's enrichment stays within what the processor budgets."""

from __future__ import annotations

from datetime import UTC, datetime

from clickstream_common.bus import (
    BUS_MAX_RECORD_BYTES,
    DEFAULT_MAX_EVENT_BYTES,
    ENRICHMENT_MAX_BYTES,
    MAX_EVENT_BYTES_CEILING,
    max_record_bytes,
)
from clickstream_common.schema import (
    SHORT_TEXT_MAX_LENGTH,
    Campaign,
    EnrichedEvent,
    Event,
    UserAgentInfo,
)

# A character of 4 bytes in UTF-8: the most a short text's length limit lets through.
WIDE = "\U0001f600"


def test_the_largest_enrichment_fits_the_budget() -> None:
    event = Event(
        event_id="e" * 128,
        event_type="page_view",
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        user_id="u",
    )
    text = WIDE * SHORT_TEXT_MAX_LENGTH
    at = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    # Every field the collector adds, each at its widest.
    times = dict.fromkeys(("received_at", "sent_at", "event_time", "original_event_time"), at)
    texts = dict.fromkeys(("source", "client_ip", "referrer_host"), text)
    agent = dict.fromkeys(set(UserAgentInfo.model_fields) - {"is_bot"}, text)
    enriched = EnrichedEvent(
        **event.model_dump(),
        **times,
        **texts,
        future_dated=True,
        event_time_adjusted="ahead",
        campaign=Campaign(**dict.fromkeys(Campaign.model_fields, text)),
        user_agent_info=UserAgentInfo(**agent, is_bot=True),
    )
    added = len(enriched.model_dump_json().encode()) - len(event.model_dump_json().encode())
    # Plus a user agent the collector may fill in (1,024 characters of 4 bytes).
    assert added + 4 * 1024 <= ENRICHMENT_MAX_BYTES
    assert added > 14 * SHORT_TEXT_MAX_LENGTH * 4  # the widest texts were really in it


def test_records_fit_the_bus() -> None:
    assert max_record_bytes() == DEFAULT_MAX_EVENT_BYTES + ENRICHMENT_MAX_BYTES
    assert max_record_bytes(MAX_EVENT_BYTES_CEILING) < BUS_MAX_RECORD_BYTES
    # Never budgeted above what the bus can carry.
    assert max_record_bytes(4 * BUS_MAX_RECORD_BYTES) == BUS_MAX_RECORD_BYTES
