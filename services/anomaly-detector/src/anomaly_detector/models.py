"""Online models of the per-minute series (pure, no I/O).

`SeasonalRobust` is the production model. Each series is learned online:

* a **seasonal profile**: the series' mean level per hour of day (per hour of the week once
  a whole week was seen), an exponentially weighted average over days, read between hour
  centres by linear interpolation; it turns a value into "level with the season taken out";
* a **robust level and spread**: median and MAD of the last `window` deseasonalised values;
* **variance-stabilised scores**: counts and amounts are compared as square roots (a Poisson
  count's root has a standard deviation of 1/2 whatever its mean), ratios as arcsine roots
  (1/(2 sqrt(n)) for n trials); the spread never drops below that noise floor, so a quiet
  series cannot alarm on a handful of events;
* **evidence over up to 3 buckets**: the score is the strongest of the last 1, 2 and 3 z
  values summed over sqrt(k), so a sharp spike alarms at once and a sustained, smaller shift
  within three buckets.

A value the model scores as anomalous is learned clipped to the edge of the expected range,
so an outage does not teach the baseline that the outage is normal.

`RollingRobust` is the same without the seasonal profile, `RiverPredictive` a river
forecaster with river's predictive anomaly scorer, and `StaticThreshold` the baseline a
team would configure by hand: fixed bounds per series from the history it saw. All four
are compared on the same seeded incidents by `anomaly_detector.evaluation`.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from anomaly_detector.series import Kind, Point

MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Verdict:
    """A model's judgement of one series in one bucket."""

    series: str
    start: datetime
    observed: float
    expected: float
    low: float
    high: float
    score: float  # signed: negative below the expected range
    anomalous: bool


@dataclass(frozen=True)
class Tuning:
    window: int = 60  # buckets in the rolling median/MAD
    min_history: int = 20  # buckets seen before the model scores at all
    threshold: float = 6.0  # |score| at which a bucket is anomalous
    evidence: int = 3  # buckets over which z values accumulate
    min_trials: float = 20.0  # a ratio with fewer trials is neither scored nor learned
    amount_floor: float = 0.05  # amounts: spread at least this share of the level (roots)
    profile_alpha: float = 0.3  # weight of the newest day in the seasonal profile
    bucket_seconds: float = 60.0


ANSCOMBE = 3 / 8  # sqrt(x + 3/8) keeps a standard deviation near 1/2 down to small counts


def _transform(kind: Kind, value: float, factor: float = 1.0, unit: float = 1.0) -> float:
    """Counts (and amounts, in units of a typical order) as Anscombe roots; ratios as
    arcsine roots."""
    if kind is Kind.RATIO:
        return math.asin(math.sqrt(min(max(value, 0.0), 1.0)))
    return math.sqrt(max(value, 0.0) / unit / factor + ANSCOMBE / factor)


def _inverse(kind: Kind, y: float, factor: float = 1.0, unit: float = 1.0) -> float:
    y = max(y, 0.0)
    if kind is Kind.RATIO:
        return math.sin(min(y, math.pi / 2)) ** 2
    return max((y * y * factor - ANSCOMBE) * unit, 0.0)


def _noise_floor(point: Point, factor: float, level: float, tuning: Tuning) -> float:
    if point.kind is Kind.COUNT:
        return 0.5 / math.sqrt(factor)
    if point.kind is Kind.RATIO:
        return 0.5 / math.sqrt(max(point.trials, 1.0))
    # An amount in units of the mean order: a count of orders of varying size (a compound
    # Poisson sum; with order values as spread as their mean, the root's deviation is
    # sqrt(2)/2).
    return max(tuning.amount_floor * level, math.sqrt(2) / 2 / math.sqrt(factor))


def scoreable(point: Point, tuning: Tuning) -> bool:
    if math.isnan(point.value):
        return False
    return point.kind is not Kind.RATIO or point.trials >= tuning.min_trials


class SeasonalProfile:
    """Mean level per hour of day and of week, learned over days (exponential weights)."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.day: list[float | None] = [None] * 24
        self.week: list[float | None] = [None] * 168
        self._hour: datetime | None = None
        self._sum = 0.0
        self._n = 0

    def learn(self, start: datetime, value: float) -> None:
        hour = start.replace(minute=0, second=0, microsecond=0)
        if self._hour is not None and hour != self._hour:
            self._finish()
        if self._hour != hour:
            self._hour, self._sum, self._n = hour, 0.0, 0
        self._sum += value
        self._n += 1

    def _finish(self) -> None:
        if self._hour is None or self._n == 0:
            return
        mean = self._sum / self._n
        for table, index in ((self.day, self._hour.hour), (self.week, _hour_of_week(self._hour))):
            old = table[index]
            table[index] = mean if old is None else old + self.alpha * (mean - old)

    def factor(self, t: datetime) -> float:
        """The seasonal multiple of the mean level at t; 1 until every hour was seen."""
        table, size = (self.week, 168) if None not in self.week else (self.day, 24)
        if None in table:
            return 1.0
        values = [v or 0.0 for v in table]
        mean = sum(values) / size
        if mean <= 0:
            return 1.0
        # Position in hours from the table's start, read between hour centres.
        position = (_hour_of_week(t) if size == 168 else t.hour) + t.minute / 60 - 0.5
        low = math.floor(position)
        frac = position - low
        a, b = values[low % size], values[(low + 1) % size]
        level = a + frac * (b - a)
        return max(level / mean, 0.05)

    def state(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "week": self.week,
            "hour": self._hour.isoformat() if self._hour else None,
            "sum": self._sum,
            "n": self._n,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.day = list(state["day"])
        self.week = list(state["week"])
        self._hour = datetime.fromisoformat(state["hour"]) if state["hour"] else None
        self._sum, self._n = float(state["sum"]), int(state["n"])


def _hour_of_week(t: datetime) -> int:
    return t.weekday() * 24 + t.hour


class SeriesModel(Protocol):
    def observe(self, point: Point, start: datetime) -> Verdict | None:
        """Score the bucket (None while warming up or not scoreable), then learn from it."""
        ...


@dataclass
class RobustModel:
    """Rolling median/MAD on variance-stabilised values, optionally deseasonalised."""

    tuning: Tuning
    seasonal: bool = True
    history: deque[float] = field(default_factory=deque)
    recent_z: deque[float] = field(default_factory=deque)
    profile: SeasonalProfile | None = None
    # The window's spread, averaged over ~100 buckets: a window that happens to be quiet
    # does not narrow the expected range below what the series usually does.
    typical_spread: float | None = None
    # Amounts: the mean order value (revenue / orders), learned as they come.
    unit: float | None = None

    def __post_init__(self) -> None:
        self.history = deque(self.history, maxlen=self.tuning.window)
        self.recent_z = deque(self.recent_z, maxlen=self.tuning.evidence)
        if self.profile is None:
            self.profile = SeasonalProfile(self.tuning.profile_alpha)

    def _factor(self, point: Point, start: datetime) -> float:
        if not self.seasonal or point.kind is Kind.RATIO or self.profile is None:
            return 1.0
        # The middle of the bucket.
        return self.profile.factor(start + timedelta(seconds=self.tuning.bucket_seconds / 2))

    def observe(self, point: Point, start: datetime) -> Verdict | None:
        if not scoreable(point, self.tuning):
            return None
        unit = 1.0
        if point.kind is Kind.AMOUNT:
            if point.trials > 0:
                mean_order = point.value / point.trials
                self.unit = (
                    mean_order if self.unit is None else self.unit + 0.02 * (mean_order - self.unit)
                )
            if self.unit is None or self.unit <= 0:
                return None  # no order seen yet: no unit to count revenue in
            unit = self.unit
        factor = self._factor(point, start)
        y = _transform(point.kind, point.value, factor, unit)
        verdict = None
        learned = y
        if len(self.history) >= self.tuning.min_history:
            level = statistics.median(self.history)
            spread = MAD_TO_SIGMA * statistics.median(abs(v - level) for v in self.history)
            typical = self.typical_spread
            self.typical_spread = spread if typical is None else typical + 0.01 * (spread - typical)
            sigma = max(
                spread, self.typical_spread, _noise_floor(point, factor, level, self.tuning)
            )
            z = (y - level) / sigma
            self.recent_z.append(z)
            score = _evidence(self.recent_z)
            threshold = self.tuning.threshold
            anomalous = abs(score) >= threshold
            verdict = Verdict(
                series=point.series,
                start=start,
                observed=point.value,
                expected=_inverse(point.kind, level, factor, unit),
                low=_inverse(point.kind, level - threshold * sigma, factor, unit),
                high=_inverse(point.kind, level + threshold * sigma, factor, unit),
                score=score,
                anomalous=anomalous,
            )
            # Learn an outlier at the edge of the range, not at its value.
            edge = 3 * sigma
            learned = min(max(y, level - edge), level + edge)
        self.history.append(learned)
        if self.seasonal and self.profile is not None and point.kind is not Kind.RATIO:
            self.profile.learn(start, _inverse(point.kind, learned, factor, unit))
        return verdict

    def state(self) -> dict[str, Any]:
        return {
            "history": list(self.history),
            "recent_z": list(self.recent_z),
            "profile": self.profile.state() if self.profile else None,
            "typical_spread": self.typical_spread,
            "unit": self.unit,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.history.clear()
        self.history.extend(float(v) for v in state["history"])
        self.recent_z.clear()
        self.recent_z.extend(float(v) for v in state["recent_z"])
        self.typical_spread = state.get("typical_spread")
        self.unit = state.get("unit")
        if state.get("profile") and self.profile is not None:
            self.profile.restore(state["profile"])


def _evidence(recent: deque[float]) -> float:
    """The strongest of the last 1..k z values summed over sqrt(k) (signed)."""
    best = 0.0
    total = 0.0
    for k, z in enumerate(reversed(recent), start=1):
        total += z
        value = total / math.sqrt(k)
        if abs(value) > abs(best):
            best = value
    return best


@dataclass
class StaticThreshold:
    """Fixed bounds per series: the 0.5th and 99.5th percentile of everything seen during
    `learn_buckets`, widened by `margin`; then frozen, as a hand-set alert threshold is."""

    tuning: Tuning
    learn_buckets: int = 2 * 1440
    margin: float = 0.3
    seen: list[float] = field(default_factory=list)
    bounds: tuple[float, float] | None = None

    def observe(self, point: Point, start: datetime) -> Verdict | None:
        if not scoreable(point, self.tuning):
            return None
        if self.bounds is None:
            self.seen.append(point.value)
            if len(self.seen) >= self.learn_buckets:
                ordered = sorted(self.seen)
                low = ordered[int(0.005 * (len(ordered) - 1))] * (1 - self.margin)
                high = ordered[int(0.995 * (len(ordered) - 1))] * (1 + self.margin)
                self.bounds = (low, high)
                self.seen = []
            return None
        low, high = self.bounds
        value = point.value
        anomalous = value < low or value > high
        middle = (low + high) / 2
        width = max(high - low, 1e-9) / 2
        return Verdict(
            point.series, start, value, middle, low, high, (value - middle) / width, anomalous
        )


@dataclass
class RiverPredictive:
    """river's PredictiveAnomalyDetection around a Holt forecaster (level + trend), on the
    same variance-stabilised values as the robust model; a score of 1 is an anomaly."""

    tuning: Tuning
    n_std: float = 6.0
    detector: Any = None
    seen: int = 0

    def __post_init__(self) -> None:
        from river import anomaly, time_series

        self.detector = anomaly.PredictiveAnomalyDetection(
            time_series.HoltWinters(alpha=0.3, beta=0.05),  # type: ignore[no-untyped-call]
            horizon=1,
            n_std=self.n_std,
            warmup_period=self.tuning.min_history,
        )

    def observe(self, point: Point, start: datetime) -> Verdict | None:
        if not scoreable(point, self.tuning):
            return None
        y = _transform(point.kind, point.value)
        verdict = None
        if self.seen >= 2:  # Holt's method needs two values before it forecasts
            score = float(self.detector.score_one(None, y))
            if self.seen >= self.tuning.min_history:
                expected = float(self.detector.predictive_model.forecast(1)[0])
                verdict = Verdict(
                    point.series,
                    start,
                    point.value,
                    _inverse(point.kind, expected),
                    math.nan,
                    math.nan,
                    score if y >= expected else -score,
                    score >= 1.0,
                )
        self.detector.learn_one(None, y)
        self.seen += 1
        return verdict


MODELS = ("seasonal", "rolling", "river", "static")
"""The candidates of the evaluation; `seasonal` is the one the service runs."""


def new_model(name: str, tuning: Tuning) -> SeriesModel:
    if name == "seasonal":
        return RobustModel(tuning, seasonal=True)
    if name == "rolling":
        return RobustModel(tuning, seasonal=False)
    if name == "river":
        return RiverPredictive(tuning)
    if name == "static":
        return StaticThreshold(tuning)
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


class Detector:
    """One model per series, created on first sight; closed buckets in, verdicts out."""

    def __init__(self, model: str = "seasonal", tuning: Tuning | None = None) -> None:
        self.model = model
        self.tuning = tuning or Tuning()
        self.models: dict[str, SeriesModel] = {}

    def observe(self, start: datetime, points: list[Point]) -> list[Verdict]:
        verdicts = []
        for point in points:
            model = self.models.get(point.series)
            if model is None:
                model = self.models[point.series] = new_model(self.model, self.tuning)
            verdict = model.observe(point, start)
            if verdict is not None:
                verdicts.append(verdict)
        return verdicts

    def state(self) -> dict[str, Any]:
        """The robust models' state (JSON-ready), for a checkpoint."""
        return {
            name: model.state()
            for name, model in self.models.items()
            if isinstance(model, RobustModel)
        }

    def restore(self, state: dict[str, Any]) -> None:
        for name, saved in state.items():
            model = RobustModel(self.tuning, seasonal=self.model == "seasonal")
            model.restore(saved)
            self.models[name] = model


def utc_minute(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(second=0, microsecond=0)
