from datetime import UTC, datetime, timedelta

from clickstream_common.schema import Event
from clickstream_simulator.generator import ClickstreamGenerator

START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_same_seed_same_events() -> None:
    a = ClickstreamGenerator(seed=7).events_between(START, START + timedelta(minutes=5), 300)
    b = ClickstreamGenerator(seed=7).events_between(START, START + timedelta(minutes=5), 300)
    assert a == b
    assert len(a) == 300


def test_events_are_valid_ordered_and_in_range() -> None:
    end = START + timedelta(minutes=4)
    events = ClickstreamGenerator(seed=1).events_between(START, end, 1000)
    times = [datetime.fromisoformat(e["timestamp"]) for e in events]
    assert times == sorted(times)
    assert times[0] >= START and times[-1] < end
    for event in events:
        Event.model_validate(event)
    assert len({e["event_id"] for e in events}) == len(events)
    kinds = {e["event_type"] for e in events}
    assert {"page_view", "product_view", "add_to_cart", "search"} <= kinds


def test_sessions_follow_the_shopping_funnel() -> None:
    generator = ClickstreamGenerator(seed=3)
    for _ in range(200):
        session = generator.session_events(START)
        kinds = [e["event_type"] for e in session]
        assert kinds[0] == "page_view"
        assert len({e["session_id"] for e in session}) == 1
        if "purchase" in kinds:
            assert kinds.index("checkout") < kinds.index("purchase")
            assert "add_to_cart" in kinds
