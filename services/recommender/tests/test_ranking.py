"""Pure parts: which events count, and the ranking."""

from __future__ import annotations

from recommender.state import Item, event_row, rank_for_user


def test_event_row_keeps_only_what_changes_recommendations() -> None:
    base = {"received_at": "2026-11-02T10:00:00+00:00", "anonymous_id": "a", "session_id": "s"}
    assert event_row({**base, "event_type": "page_view"}, "e:0", 1) is None
    assert event_row({**base, "event_type": "product_view"}, "e:0", 1) is None  # no product
    row = event_row({**base, "event_type": "product_view", "product_id": "P1"}, "e:0", 7)
    assert row is not None and row[1:] == ["a", "s", "product_view", "P1", "e:0", 7]
    logged_in = event_row(
        {**base, "user_id": "U1", "event_type": "add_to_cart", "product_id": "P2"}, "e:0", 8
    )
    assert logged_in is not None and logged_in[1] == "U1"


def test_ranking_prefers_recent_views_and_fills_with_trending() -> None:
    recent = ["A", "B"]
    neighbours = [
        ([("X", 10.0), ("Y", 5.0), ("B", 9.0)], []),  # of A (newest)
        ([("Z", 10.0)], [("Y", 1.0)]),  # of B
    ]
    trending = [("T1", 9.0), ("X", 8.0), ("T2", 7.0)]
    items = rank_for_user(recent, neighbours, trending, limit=5)
    assert [i.product_id for i in items] == ["Y", "X", "Z", "T1", "T2"]
    assert items[0].reason == "co_bought" and items[1].reason == "co_viewed"
    assert items[3] == Item("T1", 9.0, "trending")
    # Already viewed products are not recommended again.
    assert "A" not in {i.product_id for i in items} and "B" not in {i.product_id for i in items}
