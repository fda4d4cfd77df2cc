"""Business figures for dashboards, kept from the windows query's update-mode output.

The warehouse holds the exact history; these gauges give Grafana the "now" view without a
warehouse query: live users (the latest 5-minute window) and trending products (views in the
last 15 minutes, top 10).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Gauge

ACTIVE_USERS = Gauge(
    "processor_active_users", "Distinct users with an event in the latest 5 minutes of event time"
)
TRENDING_PRODUCT_VIEWS = Gauge(
    "processor_trending_product_views",
    "Product views in the last 15 minutes of event time, top 10 products only",
    ["product_id"],
)

TRENDING_SPAN = timedelta(minutes=15)
TRENDING_TOP = 10


def latest_active_users(rows: list[dict[str, Any]]) -> tuple[datetime, int] | None:
    """(window_end, users) of the 5-minute window ending with the newest minute in `rows`."""
    if not rows:
        return None
    newest_end = max(r["window_start"] for r in rows) + timedelta(minutes=1)
    for row in rows:
        if row["window_end"] == newest_end:
            return newest_end, int(row["active_users"])
    return None


class TrendingProducts:
    """Per-minute product views (latest value per window wins), summed over a moving span."""

    def __init__(self, span: timedelta = TRENDING_SPAN, top: int = TRENDING_TOP) -> None:
        self.span = span
        self.top = top
        self.views: defaultdict[datetime, dict[str, int]] = defaultdict(dict)

    def update(self, rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
        for row in rows:
            self.views[row["window_start"]][row["product_id"]] = int(row["views"])
        if not self.views:
            return []
        horizon = max(self.views) + timedelta(minutes=1) - self.span
        for minute in [m for m in self.views if m < horizon]:
            del self.views[minute]
        totals: defaultdict[str, int] = defaultdict(int)
        for per_product in self.views.values():
            for product, views in per_product.items():
                totals[product] += views
        ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
        return [item for item in ranked[: self.top] if item[1] > 0]


class LiveFigures:
    def __init__(self) -> None:
        self.latest_window_end: datetime | None = None
        self.trending = TrendingProducts()

    def observe(
        self, active_rows: list[dict[str, Any]], product_rows: list[dict[str, Any]]
    ) -> None:
        latest = latest_active_users(active_rows)
        if latest is not None and (
            self.latest_window_end is None or latest[0] >= self.latest_window_end
        ):
            self.latest_window_end = latest[0]
            ACTIVE_USERS.set(latest[1])
        if product_rows:
            top = self.trending.update(product_rows)
            TRENDING_PRODUCT_VIEWS.clear()  # products that left the top 10 lose their series
            for product, views in top:
                TRENDING_PRODUCT_VIEWS.labels(product).set(views)
