"""The pure core: buckets, series, models and the evaluation's scoring."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from anomaly_detector.evaluation import GRACE_SECONDS, ModelResult, _score_incident, episodes
from anomaly_detector.models import Detector, RobustModel, SeasonalProfile, Tuning, Verdict
from anomaly_detector.output import anomaly_record, lake_table
from anomaly_detector.series import (
    BUSIEST_VISITORS,
    REJECTED,
    Kind,
    MinuteAggregator,
    Observation,
    Point,
    aggregator_state,
    observation_from_dead_letter,
    observation_from_event,
    restore_aggregator,
)
from clickstream_common.tables import ANOMALIES
from clickstream_simulator.scenario import Incident, IncidentKind

T = datetime(2026, 11, 4, 12, 0, tzinfo=UTC)


def obs(seconds: float, event_type: str, **fields: object) -> Observation:
    return Observation(T + timedelta(seconds=seconds), "web", event_type, **fields)  # type: ignore[arg-type]


def test_records_become_observations() -> None:
    event = {
        "received_at": "2026-11-04T12:00:05Z",
        "event_type": "purchase",
        "source": "web",
        "revenue": 10.5,
    }
    parsed = observation_from_event(event)
    assert parsed == Observation(T + timedelta(seconds=5), "web", "purchase", 10.5, None)
    assert observation_from_event({"event_type": "x"}) is None
    # The visitor is the user key: the user id once known, else the device's anonymous id.
    known = observation_from_event({**event, "user_id": "U1", "anonymous_id": "A1"})
    anonymous = observation_from_event({**event, "anonymous_id": "A1"})
    assert known is not None and known.visitor == "U1"
    assert anonymous is not None and anonymous.visitor == "A1"
    letter = {"received_at": "2026-11-04T12:00:07+00:00", "source": "app", "reason": "bad"}
    assert observation_from_dead_letter(letter, T) == Observation(
        T + timedelta(seconds=7), "app", REJECTED
    )
    assert observation_from_dead_letter({}, T).received_at == T


def test_buckets_close_after_the_grace_and_gaps_close_as_zeros() -> None:
    agg = MinuteAggregator(60, 10)
    agg.add(obs(1, "product_view", product_id="A"))
    agg.add(obs(2, "product_view", product_id="A"))
    agg.add(obs(3, "product_view", product_id="B"))
    agg.add(obs(4, "purchase", revenue=20.0))
    agg.add(obs(5, REJECTED))
    assert agg.close_ready() == []  # the watermark (newest - 10 s) is inside the minute
    agg.add(obs(69, "page_view"))  # 12:01:09 -> watermark 12:00:59
    assert agg.close_ready() == []
    agg.add(obs(185, "page_view"))  # 12:03:05 -> watermark 12:02:55: two buckets end
    closed = agg.close_ready()
    assert [b.start for b in closed] == [T, T + timedelta(minutes=1)]
    points = {p.series: p for p in closed[0].points(agg.sources)}
    assert points["events:product_view:web"].value == 3
    assert points["events:checkout:web"].value == 0  # a known source with nothing is 0
    assert points["conversion:purchase_per_product_view"].value == 1 / 3
    assert points["revenue"].value == 20.0
    assert points["product_views:top_share"].value == 2 / 3
    assert points["rejected_share"].value == 1 / 5
    # A record for a closed bucket is late: counted, not added.
    agg.add(obs(30, "page_view"))
    assert agg.late == 1
    # An idle stream: the clock closes the buckets, as zeros.
    agg.advance(T + timedelta(minutes=6))
    idle = agg.close_ready()
    assert [b.start for b in idle] == [T + timedelta(minutes=m) for m in (2, 3, 4)]
    assert all(p.value == 0 for p in idle[2].points(agg.sources) if p.kind is Kind.COUNT)


def test_busiest_visitors_sum_the_events_of_the_few_most_active() -> None:
    agg = MinuteAggregator(60, 10)
    # Twenty people with two events each, and two scrapers with 30 and 25 page views.
    for person in range(20):
        for second in (1, 2):
            agg.add(obs(second, "page_view", visitor=f"person-{person}"))
    for scraper, count in (("bot-a", 30), ("bot-b", 25)):
        for i in range(count):
            agg.add(obs(3 + i, "page_view", visitor=scraper))
    agg.add(obs(40, REJECTED))  # a rejected record has no visitor to count
    agg.add(obs(75, "page_view", visitor="late"))
    (bucket,) = agg.close_ready()
    points = {p.series: p for p in bucket.points(agg.sources)}
    assert BUSIEST_VISITORS == 3
    assert points["visitors:busiest_events"] == Point(
        "visitors:busiest_events", Kind.COUNT, 30 + 25 + 2
    )
    # An empty bucket: nobody, zero.
    agg.advance(T + timedelta(minutes=4))
    empty = {p.series: p for p in agg.close_ready()[-1].points(agg.sources)}
    assert empty["visitors:busiest_events"].value == 0


def test_aggregator_state_round_trips() -> None:
    agg = MinuteAggregator(60, 10)
    agg.add(obs(1, "product_view", product_id="A", visitor="V1"))
    agg.add(obs(2, "purchase", revenue=5.0, visitor="V1"))
    copy = MinuteAggregator(60, 10)
    state = aggregator_state(agg)
    restore_aggregator(copy, state)
    assert copy.open.keys() == agg.open.keys()
    assert copy.open[T].counts == agg.open[T].counts
    assert copy.open[T].events_by_visitor == agg.open[T].events_by_visitor == {"V1": 2}
    assert copy.watermark == agg.watermark and copy.sources == agg.sources
    # A checkpoint written before visitors were counted still restores (without them).
    for saved in state["open"]:
        del saved["events_by_visitor"]
    older = MinuteAggregator(60, 10)
    restore_aggregator(older, state)
    assert older.open[T].counts == agg.open[T].counts and not older.open[T].events_by_visitor


def test_profile_learns_the_shape_of_the_day() -> None:
    profile = SeasonalProfile(alpha=0.5)
    assert profile.factor(T) == 1.0  # nothing learned yet
    for minute in range(2 * 24 * 60 + 1):
        t = T + timedelta(minutes=minute)
        profile.learn(t, 200.0 if 18 <= t.hour < 22 else 100.0)
    evening = profile.factor(T.replace(hour=20))
    night = profile.factor(T.replace(hour=3))
    assert math.isclose(evening / night, 2.0, rel_tol=1e-6)


def _series(rng: random.Random, mean: float, minutes: int) -> list[float]:
    return [float(max(0, round(rng.gauss(mean, math.sqrt(mean))))) for _ in range(minutes)]


def test_robust_model_is_quiet_on_noise_and_alarms_on_a_drop() -> None:
    rng = random.Random(3)
    model = RobustModel(Tuning())
    verdicts: list[Verdict] = []
    for i, value in enumerate(_series(rng, 40, 300)):
        v = model.observe(Point("events:checkout:web", Kind.COUNT, value), T + timedelta(minutes=i))
        if v is not None:
            verdicts.append(v)
    assert verdicts and not any(v.anomalous for v in verdicts)
    drop = [
        model.observe(Point("events:checkout:web", Kind.COUNT, 0.0), T + timedelta(minutes=300 + i))
        for i in range(3)
    ]
    assert drop[0] is not None and drop[0].anomalous and drop[0].score < 0
    assert drop[0].low > 0 and drop[0].expected > 30
    # The outage is learned clipped: the baseline stays near normal while it lasts.
    assert drop[2] is not None and drop[2].anomalous and drop[2].expected > 30


def test_small_counts_need_more_evidence() -> None:
    # A series of ~2 a minute: a single empty minute is ordinary.
    rng = random.Random(5)
    model = RobustModel(Tuning())
    for i, value in enumerate(_series(rng, 2, 200)):
        model.observe(Point("events:purchase:web", Kind.COUNT, value), T + timedelta(minutes=i))
    v = model.observe(Point("events:purchase:web", Kind.COUNT, 0.0), T + timedelta(minutes=200))
    assert v is not None and not v.anomalous


def test_ratios_with_few_trials_are_not_scored() -> None:
    model = RobustModel(Tuning())
    point = Point("conversion:checkout_per_add_to_cart", Kind.RATIO, 0.5, trials=3)
    assert model.observe(point, T) is None
    assert model.observe(Point("x", Kind.RATIO, math.nan, 0), T) is None


def test_detector_state_round_trips() -> None:
    detector = Detector("seasonal")
    rng = random.Random(1)
    for i, value in enumerate(_series(rng, 50, 100)):
        detector.observe(T + timedelta(minutes=i), [Point("s", Kind.COUNT, value)])
    restored = Detector("seasonal")
    restored.restore(detector.state())
    nxt = [Point("s", Kind.COUNT, 200.0)]
    a = detector.observe(T + timedelta(minutes=100), nxt)
    b = restored.observe(T + timedelta(minutes=100), nxt)
    assert a == b and a[0].anomalous


def test_episodes_merge_consecutive_buckets() -> None:
    width = timedelta(minutes=1)

    def verdict(minute: int, series: str) -> Verdict:
        return Verdict(series, T + timedelta(minutes=minute), 0, 1, 0, 2, -7, True)

    merged = episodes([verdict(0, "a"), verdict(1, "b"), verdict(1, "a"), verdict(5, "c")], width)
    assert [(s - T, e - T, n) for s, e, n in merged] == [
        (timedelta(0), timedelta(minutes=2), "a"),
        (timedelta(minutes=5), timedelta(minutes=6), "c"),
    ]


def test_an_alarm_already_running_when_an_incident_begins_is_not_its_episode() -> None:
    width = timedelta(minutes=1)
    incident = Incident(IncidentKind.BOT_STORM, T + timedelta(minutes=10), timedelta(minutes=20))

    def anomalous(minute: int) -> Verdict:
        return Verdict("s", T + timedelta(minutes=minute), 0, 1, 0, 2, 7, True)

    # An episode from minute 8 runs into the incident (minute 10); another starts at 12.
    result = ModelResult("seasonal")
    _score_incident(result, 1, incident, [anomalous(m) for m in (8, 9, 10, 12)], width)
    (found,) = result.incidents
    # Detection: the first anomalous bucket starting with the incident, ended, plus the grace.
    assert found.minutes_to_detect == round(1 + GRACE_SECONDS / 60, 2)
    # The episode that began before the incident is a false alarm, the later one a true one.
    assert result.incident_false_alarms == 1 and result.true_episodes == 1
    result = ModelResult("seasonal")
    _score_incident(result, 1, incident, [anomalous(12), anomalous(13)], width)
    assert result.incidents[0].minutes_to_detect == round(3 + GRACE_SECONDS / 60, 2)
    assert result.true_episodes == 1 and result.incident_false_alarms == 0


def test_anomaly_rows_fit_the_table() -> None:
    v = Verdict("revenue", T, 0.0, 100.0, 40.0, 190.0, -8.5, True)
    record = anomaly_record(v, timedelta(minutes=1), "seasonal", T + timedelta(seconds=70))
    assert record["window_end"] == "2026-11-04T12:01:00+00:00"
    table = lake_table([record], 42)
    assert tuple(table.column_names) == ANOMALIES.column_names
    assert table.schema.field("window_start").type == pa.timestamp("us", tz="UTC")
    assert table.to_pylist()[0]["score"] == -8.5 and table.to_pylist()[0]["batch_id"] == 42
