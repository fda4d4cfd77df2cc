"""What the collector adds to an event, alongside (never over) the client's fields."""

from __future__ import annotations

from datetime import datetime, timedelta

from clickstream_common.schema import EnrichedEvent, Event, new_event_id


def corrected_event_time(
    timestamp: datetime,
    sent_at: datetime | None,
    received_at: datetime,
    tolerance: timedelta,
    maximum: timedelta,
) -> datetime:
    """Device time shifted by the device's clock offset (received_at - sent_at).

    Offsets within `tolerance` are mostly network delay and are not applied; offsets beyond
    `maximum` come from a broken clock and are not trusted either.
    """
    if sent_at is None:
        return timestamp
    offset = received_at - sent_at
    if abs(offset) <= tolerance or abs(offset) > maximum:
        return timestamp
    return timestamp + offset


def enrich(
    event: Event,
    *,
    source: str,
    received_at: datetime,
    sent_at: datetime | None,
    tolerance: timedelta,
    maximum: timedelta,
) -> EnrichedEvent:
    event_time = corrected_event_time(event.timestamp, sent_at, received_at, tolerance, maximum)
    fields = event.model_dump(exclude_none=True)
    fields.setdefault("event_id", new_event_id())
    return EnrichedEvent.model_validate(
        {
            **fields,
            "source": source,
            "received_at": received_at,
            "sent_at": sent_at,
            "event_time": event_time,
            "future_dated": event_time > received_at + tolerance,
        }
    )
