"""Pure parts: which events count, and the ranking."""

from __future__ import annotations

from recommender.state import Item, event_row, rank_for_user


def test_event_row_keeps_only_what_changes_recommendations() -> None:
    base = {"received_at": "2026-11-02T10:00:00+00:00", "anonymous_id": "a", "session_id": "s"}
    assert event_row({**base, "event_type": "page_view"}, "e:0", 1) is None
    assert event_row({**base, "event_type": "product_view"}, "e:0", 1) is None  # no product
    row = event_row({**base, "event_type": "product_view", "product_id": "P1"}, "e:0", 7)
    assert row is not None and row[1:] == ["a", "s", "product_view", "P1", "e:0", 7, False]
    logged_in = event_row(
        {**base, "user_id": "U1", "event_type": "add_to_cart", "product_id": "P2"}, "e:0", 8
    )
    assert logged_in is not None and logged_in[1] == "U1"


def test_ranking_mixes_categories_co_occurrence_and_popularity() -> None:
    recent = ["A", "B"]
    neighbours = [
        ([("X", 10.0), ("B", 9.0)], [("Y", 10.0)]),  # of A (newest): B is seen already
        ([("Z", 10.0)], []),  # of B
    ]
    trending = [("T1", 9.0), ("X", 8.0), ("T2", 7.0), ("A", 6.0)]
    tastes = [("shoes", 3.0), ("hats", 1.0)]
    tops = {"shoes": [("S1", 5.0), ("S2", 5.0)], "hats": [("H1", 1.0)]}
    items = rank_for_user(recent, neighbours, trending, 8, True, {}, tastes, tops)
    ids = [i.product_id for i in items]
    # The favourite category's products lead; the lesser category follows them.
    assert ids[:2] == ["S1", "S2"] and items[0].reason == "your_categories"
    assert ids.index("H1") > ids.index("S2")
    # Co-bought counts twice; an older view's neighbour weighs less.
    assert ids.index("Y") < ids.index("Z") and items[ids.index("Y")].reason == "co_bought"
    # X is co-viewed and trending: both signals add up, ahead of trending-only T1.
    assert ids.index("X") < ids.index("T1")
    # Products viewed lately are not recommended again; everything is there once.
    assert "A" not in ids and "B" not in ids and len(ids) == len(set(ids)) == 8


def test_popular_neighbours_are_discounted() -> None:
    neighbours = [([("BEST", 10.0), ("NICHE", 8.0)], [])]
    popularity = {"BEST": 10_000.0, "NICHE": 25.0}
    items = rank_for_user(["A"], neighbours, [], 2, True, popularity)
    assert [i.product_id for i in items] == ["NICHE", "BEST"]


def test_without_history_the_answer_is_trending() -> None:
    items = rank_for_user([], [], [("T1", 3.0), ("T2", 2.0)], 3)
    assert items == [Item("T1", 3.0, "trending"), Item("T2", 2.0, "trending")]
