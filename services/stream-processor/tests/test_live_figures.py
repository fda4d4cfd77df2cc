from datetime import UTC, datetime, timedelta

from stream_processor.live_figures import TrendingProducts, latest_active_users

T = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def test_live_users_come_from_the_window_ending_with_the_newest_minute() -> None:
    rows = [
        {"window_start": T + k * M, "window_end": T + (k + 5) * M, "active_users": 10 + k}
        for k in range(-4, 3)
    ]
    # The newest minute starts at T+2, so the window ending at T+3 covers the last 5 minutes.
    assert latest_active_users(rows) == (T + 3 * M, 8)


def test_trending_sums_the_last_fifteen_minutes_and_keeps_the_top() -> None:
    trending = TrendingProducts(top=2)
    trending.update(
        [
            {"window_start": T, "product_id": "a", "views": 5},
            {"window_start": T, "product_id": "b", "views": 1},
        ]
    )
    # A later emission of the same window replaces its value.
    top = trending.update(
        [
            {"window_start": T, "product_id": "b", "views": 4},
            {"window_start": T + M, "product_id": "b", "views": 3},
            {"window_start": T + M, "product_id": "c", "views": 2},
        ]
    )
    assert top == [("b", 7), ("a", 5)]
    # Minutes older than the span drop out.
    top = trending.update([{"window_start": T + 15 * M, "product_id": "c", "views": 1}])
    assert top == [("b", 3), ("c", 3)]
