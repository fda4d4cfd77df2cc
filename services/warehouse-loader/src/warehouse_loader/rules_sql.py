"""SQL forms of the schema's rules (clickstream_common.schema), for the warehouse's views.

Each one repeats a rule that SQL cannot import; a parity test
(tests/test_rules_sql.py) runs it on the same cases as the rule's Python function.
"""

from __future__ import annotations

from clickstream_common.schema import PURCHASE_EVENT_TYPE


def purchase_revenue_sql(alias: str = "") -> str:
    """`clickstream_common.schema.purchase_revenue` over an events row (`alias.` before the
    columns if given), in SQL that PostgreSQL and Redshift both run."""
    c = f"{alias}." if alias else ""
    return (
        f"CASE WHEN {c}event_type = '{PURCHASE_EVENT_TYPE}' "
        f"THEN COALESCE({c}revenue, {c}price * COALESCE({c}quantity, 1), 0) ELSE 0 END"
    )
