"""The warehouse's SQL forms of the schema's rules give what the rules' functions give."""

from __future__ import annotations

import itertools

import duckdb

from clickstream_common.schema import purchase_revenue
from warehouse_loader.rules_sql import purchase_revenue_sql

# Every combination of present and absent values, and zeros.
REVENUE_CASES = list(
    itertools.product(
        ("purchase", "page_view", None),
        (None, 12.5, 0.0, -3.0),
        (None, 4.25, 0.0),
        (None, 3, 0),
    )
)


def test_purchase_revenue_sql_matches_the_schema_rule() -> None:
    with duckdb.connect() as db:
        db.execute(
            "CREATE TABLE e (event_type TEXT, revenue DOUBLE, price DOUBLE, quantity BIGINT)"
        )
        db.executemany("INSERT INTO e VALUES (?, ?, ?, ?)", REVENUE_CASES)
        got = db.execute(
            f"SELECT event_type, revenue, price, quantity, {purchase_revenue_sql('e')} FROM e"
        ).fetchall()
    assert len(got) == len(REVENUE_CASES)
    for event_type, revenue, price, quantity, value in got:
        assert value == purchase_revenue(event_type, revenue, price, quantity), (
            event_type,
            revenue,
            price,
            quantity,
        )
    # The fallback is exercised: a purchase without revenue earns price x quantity.
    assert purchase_revenue("purchase", None, 4.25, 3) == 12.75
