"""Per-minute series from the event stream (pure).

The detector watches, per bucket of `bucket_seconds` (a minute in production):
* `events:<type>:<source>`: events per standard event type and source;
* `conversion:purchase_per_product_view`, `conversion:checkout_per_add_to_cart`;
* `rejected_share`: rejected events (dead-letter topic, or unreadable records on the events
  topic) out of all events received;
* `revenue`: purchase revenue;
* `product_views:top_share`: the most viewed product's share of product views (a product
  going viral, or a scraper walking one page);
* `visitors:busiest_events`: the events of the bucket's `BUSIEST_VISITORS` most active
  visitors (a few scrapers: each sends far more events a minute than any person does, which
  stands out even where their added volume is small against the whole site's, at night).

Buckets follow `received_at`, the collector's clock: it cannot be skewed by devices or bots,
arrives in order within a few seconds, and lets a bucket close in real time (an event-time
bucket stays open for the processor's whole watermark delay).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from clickstream_common.schema import STANDARD_EVENT_TYPES, user_key_of

REJECTED = "__rejected__"
"""The event type of an observation that stands for a rejected record."""

BUSIEST_VISITORS = 3
"""Visitors summed in `visitors:busiest_events`: more than one, so that one person with two
tabs open does not move it much; few, so that a handful of scrapers fill it."""


class Kind(StrEnum):
    COUNT = "count"  # events in a bucket: Poisson-like
    RATIO = "ratio"  # successes / trials in a bucket: binomial-like
    AMOUNT = "amount"  # a sum of money: compound, no count model


@dataclass(frozen=True)
class Observation:
    """What the detector needs of one record of the events or dead-letter topic."""

    received_at: datetime
    source: str
    event_type: str
    revenue: float | None = None
    product_id: str | None = None
    visitor: str | None = None  # the user key (user_id, else anonymous_id)


@dataclass(frozen=True)
class Point:
    """One series' value in one closed bucket; ratios keep their denominator."""

    series: str
    kind: Kind
    value: float
    trials: float = 0.0


RATIOS: dict[str, tuple[str, str]] = {
    "conversion:purchase_per_product_view": ("purchase", "product_view"),
    "conversion:checkout_per_add_to_cart": ("checkout", "add_to_cart"),
}


def count_series(event_type: str, source: str) -> str:
    return f"events:{event_type}:{source}"


def observation_from_event(record: dict[str, Any]) -> Observation | None:
    """An enriched event as the collector publishes it; None if it is not one."""
    try:
        received = datetime.fromisoformat(str(record["received_at"]).replace("Z", "+00:00"))
        event_type = str(record["event_type"])
        source = str(record.get("source") or "unknown")
    except (KeyError, ValueError):
        return None
    revenue = record.get("revenue")
    product = record.get("product_id")
    visitor = user_key_of(record.get("user_id"), record.get("anonymous_id"))
    return Observation(
        received_at=received if received.tzinfo else received.replace(tzinfo=UTC),
        source=source,
        event_type=event_type,
        revenue=float(revenue) if isinstance(revenue, int | float) else None,
        product_id=str(product) if product is not None else None,
        visitor=str(visitor) if visitor is not None else None,
    )


def observation_from_dead_letter(record: dict[str, Any], fallback: datetime) -> Observation:
    """A dead letter of the collector (it names source and received_at), or any record of the
    events topic that could not be read (the Kafka timestamp stands in)."""
    received = fallback
    raw = record.get("received_at")
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            received = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return Observation(received, str(record.get("source") or "unknown"), REJECTED)


@dataclass
class Bucket:
    start: datetime
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (type, source)
    revenue: float = 0.0
    orders: int = 0  # purchases with revenue: the revenue series' "trials"
    product_views: Counter[str] = field(default_factory=Counter)
    events_by_visitor: Counter[str] = field(default_factory=Counter)

    def add(self, obs: Observation) -> None:
        self.counts[(obs.event_type, obs.source)] += 1
        if obs.event_type == "purchase" and obs.revenue is not None and obs.revenue > 0:
            self.revenue += obs.revenue
            self.orders += 1
        if obs.event_type == "product_view" and obs.product_id is not None:
            self.product_views[obs.product_id] += 1
        if obs.visitor is not None and obs.event_type != REJECTED:
            self.events_by_visitor[obs.visitor] += 1

    def by_type(self) -> Counter[str]:
        totals: Counter[str] = Counter()
        for (event_type, _), count in self.counts.items():
            totals[event_type] += count
        return totals

    def points(self, sources: set[str]) -> list[Point]:
        """Every series' value; a count series of a known source is 0 when nothing came."""
        points = []
        for event_type in STANDARD_EVENT_TYPES:
            for source in sorted(sources):
                value = float(self.counts.get((event_type, source), 0))
                points.append(Point(count_series(event_type, source), Kind.COUNT, value))
        totals = self.by_type()
        for name, (numerator, denominator) in RATIOS.items():
            trials = float(totals.get(denominator, 0))
            value = totals.get(numerator, 0) / trials if trials else math.nan
            points.append(Point(name, Kind.RATIO, value, trials))
        received = float(sum(totals.values()))
        rejected = totals.get(REJECTED, 0) / received if received else math.nan
        points.append(Point("rejected_share", Kind.RATIO, rejected, received))
        points.append(Point("revenue", Kind.AMOUNT, self.revenue, float(self.orders)))
        views = float(sum(self.product_views.values()))
        top = max(self.product_views.values()) / views if views else math.nan
        points.append(Point("product_views:top_share", Kind.RATIO, top, views))
        busiest = sum(n for _, n in self.events_by_visitor.most_common(BUSIEST_VISITORS))
        points.append(Point("visitors:busiest_events", Kind.COUNT, float(busiest)))
        return points


class MinuteAggregator:
    """Buckets observations by received_at and closes a bucket once the watermark (the newest
    received_at seen, or the clock when the stream is idle, minus `grace`) passes its end."""

    def __init__(self, bucket_seconds: float = 60.0, grace_seconds: float = 10.0) -> None:
        self.width = timedelta(seconds=bucket_seconds)
        self.grace = timedelta(seconds=grace_seconds)
        self.open: dict[datetime, Bucket] = {}
        self.sources: set[str] = set()
        self.watermark: datetime | None = None
        self.closed_until: datetime | None = None  # every bucket before this is closed
        self.late = 0

    def bucket_start(self, t: datetime) -> datetime:
        epoch = t.timestamp()
        width = self.width.total_seconds()
        return datetime.fromtimestamp(math.floor(epoch / width) * width, UTC)

    def add(self, obs: Observation, advance: bool = True) -> None:
        """`advance`: move the watermark with this record (a single ordered stream); a reader
        of several partitions moves it itself (`advance`), from the slowest partition."""
        start = self.bucket_start(obs.received_at)
        if self.closed_until is not None and start < self.closed_until:
            self.late += 1  # its bucket was scored already
            return
        if obs.event_type in STANDARD_EVENT_TYPES:
            self.sources.add(obs.source)
        bucket = self.open.get(start)
        if bucket is None:
            bucket = self.open[start] = Bucket(start)
        bucket.add(obs)
        if advance:
            self.advance(obs.received_at)

    def advance(self, now: datetime) -> None:
        """Move the watermark to `now - grace` (never backwards)."""
        mark = now - self.grace
        if self.watermark is None or mark > self.watermark:
            self.watermark = mark

    def close_ready(self) -> list[Bucket]:
        """Buckets whose end the watermark passed, oldest first; empty buckets in between
        are closed too, so a stream that stops shows as zeros, not as silence."""
        if self.watermark is None:
            return []
        limit = self.bucket_start(self.watermark)  # buckets before this have ended
        if self.closed_until is None:
            if not self.open:
                return []
            self.closed_until = min(self.open)
        closed = []
        start = self.closed_until
        while start < limit:
            closed.append(self.open.pop(start) if start in self.open else Bucket(start))
            start += self.width
        self.closed_until = max(start, self.closed_until)
        return closed


def aggregator_state(aggregator: MinuteAggregator) -> dict[str, Any]:
    """Open buckets and clocks, JSON-ready (a checkpoint resumes exactly where it was)."""
    return {
        "sources": sorted(aggregator.sources),
        "watermark": aggregator.watermark.isoformat() if aggregator.watermark else None,
        "closed_until": aggregator.closed_until.isoformat() if aggregator.closed_until else None,
        "open": [
            {
                "start": b.start.isoformat(),
                "counts": [[t, s, n] for (t, s), n in b.counts.items()],
                "revenue": b.revenue,
                "orders": b.orders,
                "product_views": dict(b.product_views),
                "events_by_visitor": dict(b.events_by_visitor),
            }
            for b in aggregator.open.values()
        ],
    }


def restore_aggregator(aggregator: MinuteAggregator, state: dict[str, Any]) -> None:
    aggregator.sources = set(state["sources"])
    watermark, closed = state["watermark"], state["closed_until"]
    aggregator.watermark = datetime.fromisoformat(watermark) if watermark else None
    aggregator.closed_until = datetime.fromisoformat(closed) if closed else None
    aggregator.open = {}
    for saved in state["open"]:
        bucket = Bucket(datetime.fromisoformat(saved["start"]))
        bucket.counts = Counter({(t, s): int(n) for t, s, n in saved["counts"]})
        bucket.revenue = float(saved["revenue"])
        bucket.orders = int(saved.get("orders", 0))
        bucket.product_views = Counter({k: int(v) for k, v in saved["product_views"].items()})
        # Checkpoints written before the series existed have no visitor counts.
        visitors = saved.get("events_by_visitor", {})
        bucket.events_by_visitor = Counter({k: int(v) for k, v in visitors.items()})
        aggregator.open[bucket.start] = bucket
