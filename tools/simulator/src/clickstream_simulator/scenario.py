"""Traffic over simulated time: a daily pattern and injected incidents.

`timeline` turns a generator into a stream of events stamped in simulated time, with session
starts following the shop's day (quiet nights, a lunch bump, an evening peak, busier
weekends) and with incidents switched on for a span of that time:

* `checkout_outage`: the checkout fails; shoppers still browse and fill carts, but no
  checkout or purchase event happens;
* `bot_storm`: a handful of scrapers with browser user agents request product pages: page
  views, each with a product view, `intensity` / 2 times the normal page-view rate (in live
  mode: `intensity` per normal page view);
* `viral_product`: one product is shared widely; extra visits (`intensity` times the normal
  visit rate) land on its page;
* `tracking_break`: a release breaks the tracking of one event type, which drops to zero.

Time is simulated: the stream can be consumed as fast as it is generated (the anomaly
evaluation runs days in seconds) or paced against the clock by the CLI.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from clickstream_simulator.generator import SITE, USER_AGENTS, ClickstreamGenerator

MINUTE = timedelta(minutes=1)
# Longest span of one session (think times are capped at 2 minutes, at most ~20 steps).
_DAY_OF_WEEK = (1.0, 0.97, 0.97, 1.0, 1.05, 1.15, 1.1)  # Monday first


def daily_factor(t: datetime) -> float:
    """Traffic at `t` as a multiple of the weekly mean: low at night (~0.35 at 2-5 h), a
    morning and lunch rise, the peak in the evening (~1.7 around 19-20 h)."""
    hour = t.hour + t.minute / 60
    shape = (
        1
        + 0.6 * math.cos(2 * math.pi * (hour - 17) / 24)
        + 0.25 * math.cos(4 * math.pi * (hour - 20) / 24)
    )
    return shape * _DAY_OF_WEEK[t.weekday()]


class IncidentKind(StrEnum):
    CHECKOUT_OUTAGE = "checkout_outage"
    BOT_STORM = "bot_storm"
    VIRAL_PRODUCT = "viral_product"
    TRACKING_BREAK = "tracking_break"


@dataclass(frozen=True)
class Incident:
    kind: IncidentKind
    start: datetime
    duration: timedelta
    intensity: float = 1.0  # bot_storm: extra page views; viral_product: extra visits
    event_type: str = "product_view"  # tracking_break: the type that is lost

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    def active(self, t: datetime) -> bool:
        return self.start <= t < self.end

    def drops(self, event: dict[str, Any], t: datetime) -> bool:
        if not self.active(t):
            return False
        if self.kind is IncidentKind.CHECKOUT_OUTAGE:
            return event["event_type"] in ("checkout", "purchase")
        if self.kind is IncidentKind.TRACKING_BREAK:
            return bool(event["event_type"] == self.event_type)
        return False


def parse_incident(text: str, origin: datetime) -> Incident:
    """`kind@start+duration[xintensity][:event_type]` with minutes relative to `origin`,
    e.g. `checkout_outage@10+15`, `bot_storm@5+10x2`, `tracking_break@3+5:add_to_cart`."""
    try:
        kind_text, _, rest = text.partition("@")
        rest, _, event_type = rest.partition(":")
        timing, _, intensity = rest.partition("x")
        start, _, duration = timing.partition("+")
        return Incident(
            IncidentKind(kind_text),
            origin + timedelta(minutes=float(start)),
            timedelta(minutes=float(duration)),
            float(intensity) if intensity else 1.0,
            event_type or "product_view",
        )
    except ValueError as exc:
        raise ValueError(
            f"incident {text!r}: expected kind@start+duration[xintensity][:event_type] "
            f"with kind one of {', '.join(IncidentKind)}"
        ) from exc


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 50:  # normal approximation; exact enough for traffic volumes
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _bot_events(
    generator: ClickstreamGenerator, rng: random.Random, minute: datetime, count: int
) -> list[tuple[datetime, dict[str, Any]]]:
    """Scrapers: a few ids walking product pages fast, with ordinary browser agents."""
    bots = [f"bot-{i:02d}-{minute:%Y%m%d}" for i in range(5)]
    out = []
    for _ in range(count // 2):
        t = minute + timedelta(seconds=rng.uniform(0, 60))
        product = rng.choice(generator.products)
        bot = rng.choice(bots)
        url = f"{SITE}/p/{product.product_id}"
        common: dict[str, Any] = {
            "timestamp": t.isoformat(timespec="milliseconds"),
            "anonymous_id": bot,
            "session_id": bot,
            "page_url": url,
            "context": {"user_agent": USER_AGENTS[0], "locale": "en-US"},
        }
        out.append(
            (t, {**common, "event_id": f"{bot}-{rng.getrandbits(64):x}", "event_type": "page_view"})
        )
        out.append(
            (
                t,
                {
                    **common,
                    "event_id": f"{bot}-{rng.getrandbits(64):x}",
                    "event_type": "product_view",
                    "product_id": product.product_id,
                    "price": product.price,
                    "currency": "EUR",
                },
            )
        )
    return out


def timeline(
    generator: ClickstreamGenerator,
    start: datetime,
    end: datetime,
    sessions_per_minute: float,
    *,
    daily: bool = True,
    incidents: Sequence[Incident] = (),
    seed: int = 0,
) -> Iterator[dict[str, Any]]:
    """Events with timestamps in [start, end), in timestamp order.

    Visits start at `sessions_per_minute` on average (times `daily_factor` when `daily`),
    Poisson-distributed per minute; incidents add or remove events while they are active.
    """
    rng = random.Random(seed)  # noqa: S311  # reproducible, not secret
    pending: list[tuple[datetime, int, dict[str, Any]]] = []
    counter = 0
    page_views_per_session = 5.5  # the generator's mean (measured)
    minute = start
    while minute < end:
        rate = sessions_per_minute * (daily_factor(minute) if daily else 1.0)
        starts = [
            minute + timedelta(seconds=rng.uniform(0, 60)) for _ in range(_poisson(rng, rate))
        ]
        focus_starts: list[tuple[datetime, Any]] = []
        extra: list[tuple[datetime, dict[str, Any]]] = []
        for incident in incidents:
            if not incident.active(minute):
                continue
            if incident.kind is IncidentKind.VIRAL_PRODUCT:
                product = generator.products[seed % len(generator.products)]
                visits = _poisson(rng, rate * incident.intensity)
                focus_starts += [
                    (minute + timedelta(seconds=rng.uniform(0, 60)), product) for _ in range(visits)
                ]
            elif incident.kind is IncidentKind.BOT_STORM:
                count = _poisson(rng, rate * page_views_per_session * incident.intensity)
                extra += _bot_events(generator, rng, minute, count)
        for begin in starts:
            for event in generator.session_events(begin):
                counter += 1
                pending.append((datetime.fromisoformat(event["timestamp"]), counter, event))
        for begin, product in focus_starts:
            for event in generator.session_events(begin, focus=product):
                counter += 1
                pending.append((datetime.fromisoformat(event["timestamp"]), counter, event))
        for t, event in extra:
            counter += 1
            pending.append((t, counter, event))
        heapq.heapify(pending)
        minute += MINUTE
        # Visits starting later only add events at or after their start.
        horizon = min(minute, end)
        while pending and pending[0][0] < horizon:
            t, _, event = heapq.heappop(pending)
            if not any(incident.drops(event, t) for incident in incidents):
                yield event


class LiveIncidents:
    """Incidents applied to a live stream (stamped by the clock), chunk by chunk after the
    pacing, so the normal traffic keeps its rate: events that an active outage or tracking
    break loses are dropped; a bot storm adds `intensity` scraper page views per page view;
    a viral product adds `intensity` visits to its page per visit."""

    def __init__(
        self, generator: ClickstreamGenerator, incidents: Sequence[Incident], seed: int = 0
    ) -> None:
        self.generator = generator
        self.incidents = list(incidents)
        self.rng = random.Random(seed)  # noqa: S311  # reproducible, not secret
        self.focus = generator.products[seed % len(generator.products)]
        self.extra: list[tuple[datetime, int, dict[str, Any]]] = []
        self.counter = 0

    def apply(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.incidents:
            return events
        out: list[dict[str, Any]] = []
        for event in events:
            t = datetime.fromisoformat(event["timestamp"])
            for incident in self.incidents:
                if incident.active(t) and event["event_type"] == "page_view":
                    self._add(incident, event, t, out)
            while self.extra and self.extra[0][0] <= t:
                _, _, visit_event = heapq.heappop(self.extra)
                visit_event["timestamp"] = event["timestamp"]
                out.append(visit_event)
            if not any(incident.drops(event, t) for incident in self.incidents):
                out.append(event)
        return out

    def _add(
        self, incident: Incident, event: dict[str, Any], t: datetime, out: list[dict[str, Any]]
    ) -> None:
        rng = self.rng
        if incident.kind is IncidentKind.BOT_STORM:
            for _ in range(_poisson(rng, incident.intensity)):
                for _, bot_event in _bot_events(self.generator, rng, t, 2):
                    bot_event["timestamp"] = event["timestamp"]
                    out.append(bot_event)
        elif incident.kind is IncidentKind.VIRAL_PRODUCT and rng.random() < (
            incident.intensity / 5.5  # ~5.5 page views per visit
        ):
            for visit_event in self.generator.session_events(t, focus=self.focus):
                self.counter += 1
                when = datetime.fromisoformat(visit_event["timestamp"])
                heapq.heappush(self.extra, (when, self.counter, visit_event))
