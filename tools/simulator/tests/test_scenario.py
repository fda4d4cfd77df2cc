from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from clickstream_common.schema import Event
from clickstream_simulator.generator import ClickstreamGenerator
from clickstream_simulator.scenario import (
    Incident,
    IncidentKind,
    LiveIncidents,
    daily_factor,
    parse_incident,
    timeline,
)

START = datetime(2026, 11, 4, 12, 0, tzinfo=UTC)  # a Wednesday
SPAN = timedelta(minutes=20)
INCIDENT = Incident(
    IncidentKind.CHECKOUT_OUTAGE, START + timedelta(minutes=8), timedelta(minutes=6)
)


def minutes(events: list[dict], kind: str | None = None) -> Counter[int]:
    return Counter(
        int((datetime.fromisoformat(e["timestamp"]) - START).total_seconds() // 60)
        for e in events
        if kind is None or e["event_type"] == kind
    )


def run(*incidents: Incident, seed: int = 3) -> list[dict]:
    generator = ClickstreamGenerator(seed=seed, users=500, products=100, taste=0.7)
    return list(timeline(generator, START, START + SPAN, 60, incidents=incidents, seed=seed))


def test_daily_pattern_has_quiet_nights_and_busy_evenings() -> None:
    night = daily_factor(START.replace(hour=3))
    evening = daily_factor(START.replace(hour=19, minute=30))
    assert night < 0.5 < 1.4 < evening
    week = [daily_factor(START + timedelta(hours=h)) for h in range(24 * 7)]
    assert sum(week) / len(week) == pytest.approx(1.035, abs=0.01)


def test_timeline_is_ordered_valid_and_seeded() -> None:
    events = run()
    times = [datetime.fromisoformat(e["timestamp"]) for e in events]
    assert times == sorted(times) and times[0] >= START and times[-1] < START + SPAN
    for event in events[:200]:
        Event.model_validate(event)
    assert run() == events


def test_checkout_outage_and_tracking_break_remove_their_events() -> None:
    normal = run()
    outage = run(INCIDENT)
    inside = range(8, 14)
    assert sum(minutes(normal, "checkout")[m] for m in inside) > 10
    assert sum(minutes(outage, "checkout")[m] + minutes(outage, "purchase")[m] for m in inside) == 0
    assert minutes(outage, "checkout")[16] > 0  # back after the incident
    broken = run(
        Incident(
            IncidentKind.TRACKING_BREAK, INCIDENT.start, INCIDENT.duration, event_type="search"
        )
    )
    assert sum(minutes(broken, "search")[m] for m in inside) == 0
    assert sum(minutes(broken, "page_view")[m] for m in inside) > 100


def test_bot_storm_and_viral_product_add_traffic() -> None:
    normal = minutes(run(), "page_view")
    storm = minutes(
        run(Incident(IncidentKind.BOT_STORM, INCIDENT.start, INCIDENT.duration)), "page_view"
    )
    inside = range(9, 14)
    # intensity 1: half the normal page views again, from scrapers
    assert sum(storm[m] for m in inside) > 1.35 * sum(normal[m] for m in inside)
    viral = run(Incident(IncidentKind.VIRAL_PRODUCT, INCIDENT.start, INCIDENT.duration))

    def views(events: list[dict]) -> Counter[str]:
        return Counter(
            e["product_id"]
            for e in events
            if e["event_type"] == "product_view"
            and INCIDENT.start <= datetime.fromisoformat(e["timestamp"]) < INCIDENT.end
        )

    (product, count), *_ = views(viral).most_common(1)
    # The shared product is the most viewed, with several times its usual views.
    assert count > 4 * max(views(run())[product], 1)


def test_parse_incident() -> None:
    incident = parse_incident("tracking_break@2.5+3x2:add_to_cart", START)
    assert incident == Incident(
        IncidentKind.TRACKING_BREAK,
        START + timedelta(minutes=2.5),
        timedelta(minutes=3),
        2.0,
        "add_to_cart",
    )
    with pytest.raises(ValueError, match="expected kind@start"):
        parse_incident("meteor@1+1", START)


def test_live_incidents_apply_per_chunk() -> None:
    generator = ClickstreamGenerator(seed=1, taste=0.7)
    chunk = [e for e in generator.events_between(START, START + timedelta(minutes=2), 400)]
    live = LiveIncidents(
        generator,
        [
            Incident(
                IncidentKind.TRACKING_BREAK, START, timedelta(minutes=5), event_type="page_view"
            ),
            Incident(IncidentKind.BOT_STORM, START, timedelta(minutes=5), intensity=2),
        ],
    )
    out = live.apply(chunk)
    bots = [e for e in out if e["anonymous_id"].startswith("bot-")]
    assert bots and all(e["event_type"] in ("page_view", "product_view") for e in bots)
    assert not [e for e in out if e["event_type"] == "page_view" and e not in bots]
