"""Sizes of the records on the events bus: one source for the collector's event limit and the
stream processor's per-batch bound.

A record on the events topic (or stream) is an accepted event as the collector publishes it:
the event as received (at most INGEST_MAX_EVENT_BYTES of JSON) plus the fields the collector
adds (`EnrichedEvent`: receive and corrected times, source, client address, campaign, parsed
user agent, referrer host). The processor sizes its micro-batches against the largest such
record (`PROCESSOR_MAX_RECORD_BYTES`), since its Kafka source can only cap records per trigger.
"""

from __future__ import annotations

# The largest record the bus accepts: Kafka's default `max.message.bytes` (the events topic
# keeps it) and Kinesis's record limit are both 1 MiB.
BUS_MAX_RECORD_BYTES = 1024 * 1024
# The collector's default limit of one event's JSON (INGEST_MAX_EVENT_BYTES).
DEFAULT_MAX_EVENT_BYTES = 32 * 1024
# The highest INGEST_MAX_EVENT_BYTES may go: an event and its dead letter (which echoes it)
# must fit one record of the bus.
MAX_EVENT_BYTES_CEILING = 512 * 1024
# What the collector adds to an event at most, as JSON: 14 short texts of 256 characters
# (source, client address, referrer host, 5 campaign and 6 user-agent fields), at 4 bytes of
# UTF-8 each, the user agent it may fill in from the header (1,024 characters), times and
# flags. tests (clickstream-common) build the largest enrichment and check it stays below.
ENRICHMENT_MAX_BYTES = 24 * 1024


def max_record_bytes(max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> int:
    """The largest record the collector publishes when events may have `max_event_bytes`."""
    return min(max_event_bytes + ENRICHMENT_MAX_BYTES, BUS_MAX_RECORD_BYTES)
