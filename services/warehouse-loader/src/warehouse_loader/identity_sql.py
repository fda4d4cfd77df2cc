"""The identity map's table and the views built on it: stitched events, users and sessions, and
the users' traits (pure SQL builders, both dialects).

`analytics.identities` holds one row per anonymous id with the user it belongs to (the
processor's `identities` data set, loaded like every other). A stitched key is that user for
an anonymous id the map knows, else the event's own key (user id, else anonymous id):

* `stitched_events`: each event with its `stitched_user_key`;
* `stitched_users`: one row per stitched user, however many devices and anonymous visits;
* `stitched_sessions`: a visitor's sessions from before and after login (and from several
  devices) joined when they lie within the session gap of each other, so browsing
  anonymously, logging in and buying is one session of one user.

`user_traits` is every identify call's traits (SDKs, server-side calls, CRM imports), and
`users` the latest traits per user.
"""

from __future__ import annotations

from clickstream_common.tables import (
    EVENTS,
    IDENTITIES,
    SESSION_INACTIVITY_GAP,
    SESSIONS,
    WAREHOUSE_SCHEMA,
    Dialect,
    create_table_sql,
    qualified,
)
from warehouse_loader.rules_sql import purchase_revenue_sql

STITCHED_EVENT_COLUMNS = (
    "event_id",
    "source",
    "event_type",
    "event_time",
    "received_at",
    "user_key",
    "user_id",
    "anonymous_id",
    "session_id",
    "page_url",
    "page_path",
    "product_id",
    "quantity",
    "price",
    "revenue",
    "currency",
    "property_order_id",
)


def _traits(dialect: Dialect) -> str:
    # The Segment mapping keeps an identify call's traits in properties.traits.
    if dialect is Dialect.POSTGRES:
        return "properties -> 'traits'"
    return "properties.traits"  # SUPER navigation


def _seconds_between(start: str, end: str, dialect: Dialect) -> str:
    if dialect is Dialect.POSTGRES:
        return f"CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS DOUBLE PRECISION)"
    return f"CAST(DATEDIFF(microsecond, {start}, {end}) AS DOUBLE PRECISION) / 1000000"


def identity_views(dialect: Dialect) -> list[str]:
    schema = WAREHOUSE_SCHEMA
    events, identities, sessions = qualified(EVENTS), qualified(IDENTITIES), qualified(SESSIONS)
    gap = f"INTERVAL '{int(SESSION_INACTIVITY_GAP.total_seconds())} seconds'"
    columns = ", ".join(f"e.{c}" for c in STITCHED_EVENT_COLUMNS)

    stitched_events = f"""CREATE OR REPLACE VIEW {schema}.stitched_events AS
SELECT COALESCE(i.user_id, e.user_key) AS stitched_user_key, {columns}
FROM {events} AS e
LEFT JOIN {identities} AS i ON i.anonymous_id = e.user_key"""

    stitched_users = f"""CREATE OR REPLACE VIEW {schema}.stitched_users AS
SELECT
    stitched_user_key,
    COUNT(DISTINCT user_key) AS merged_keys,
    MIN(event_time) AS first_seen_at,
    MAX(event_time) AS last_seen_at,
    COUNT(*) AS events,
    SUM(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases,
    SUM({purchase_revenue_sql()}) AS revenue
FROM {schema}.stitched_events
GROUP BY stitched_user_key"""

    # Gaps and islands: a session starts a new stitched session when it begins more than the
    # gap after every earlier session of the same stitched user has ended.
    order = "ORDER BY session_start, session_key"

    def over_island(ordering: str) -> str:
        return (
            f"PARTITION BY stitched_user_key, island ORDER BY {ordering} "
            "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING"
        )

    # The first page of the first session that has one; the last of the last that has one
    # (a session after login may hold no page view at all).
    first_entry = "CASE WHEN entry_page IS NULL THEN 1 ELSE 0 END, session_start, session_key"
    last_exit = "CASE WHEN exit_page IS NULL THEN 1 ELSE 0 END, session_end DESC, session_key DESC"
    stitched_sessions = f"""CREATE OR REPLACE VIEW {schema}.stitched_sessions AS
WITH keyed AS (
    SELECT
        COALESCE(i.user_id, s.user_key) AS stitched_user_key,
        s.session_key, s.user_key, s.session_start, s.session_end, s.events, s.page_views,
        s.converted, s.revenue, s.entry_page, s.exit_page
    FROM {sessions} AS s
    LEFT JOIN {identities} AS i ON i.anonymous_id = s.user_key
), marked AS (
    SELECT
        keyed.*,
        CASE WHEN session_start <= MAX(session_end) OVER (
            PARTITION BY stitched_user_key {order}
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) + {gap}
        THEN 0 ELSE 1 END AS starts_island
    FROM keyed
), islands AS (
    SELECT
        marked.*,
        SUM(starts_island) OVER (
            PARTITION BY stitched_user_key {order} ROWS UNBOUNDED PRECEDING) AS island
    FROM marked
), ends AS (
    SELECT
        islands.*,
        FIRST_VALUE(session_key) OVER ({over_island("session_start, session_key")})
            AS first_session_key,
        FIRST_VALUE(entry_page) OVER ({over_island(first_entry)}) AS island_entry_page,
        FIRST_VALUE(exit_page) OVER ({over_island(last_exit)}) AS island_exit_page
    FROM islands
)
SELECT
    first_session_key AS stitched_session_key,
    stitched_user_key,
    MIN(session_start) AS session_start,
    MAX(session_end) AS session_end,
    {_seconds_between("MIN(session_start)", "MAX(session_end)", dialect)} AS duration_seconds,
    COUNT(*) AS sessions_joined,
    COUNT(DISTINCT user_key) AS user_keys,
    SUM(events) AS events,
    SUM(page_views) AS page_views,
    BOOL_OR(converted) AS converted,
    SUM(revenue) AS revenue,
    MAX(island_entry_page) AS entry_page,
    MAX(island_exit_page) AS exit_page
FROM ends
GROUP BY first_session_key, stitched_user_key, island"""

    user_traits = f"""CREATE OR REPLACE VIEW {schema}.user_traits AS
SELECT
    user_id,
    event_time AS identified_at,
    received_at,
    source,
    event_id,
    {_traits(dialect)} AS traits
FROM {events}
WHERE event_type = 'identify' AND user_id IS NOT NULL"""

    users = f"""CREATE OR REPLACE VIEW {schema}.users AS
SELECT user_id, traits, traits_updated_at, first_identified_at, identify_calls, source
FROM (
    SELECT
        user_id,
        traits,
        identified_at AS traits_updated_at,
        source,
        MIN(identified_at) OVER (PARTITION BY user_id) AS first_identified_at,
        COUNT(*) OVER (PARTITION BY user_id) AS identify_calls,
        ROW_NUMBER() OVER (
            PARTITION BY user_id ORDER BY identified_at DESC, received_at DESC, event_id DESC
        ) AS recency
    FROM {schema}.user_traits
) AS ranked
WHERE recency = 1"""

    return [stitched_events, stitched_users, stitched_sessions, user_traits, users]


def identity_migration(dialect: Dialect) -> list[str]:
    """The identities table (for warehouses created before it existed) and its views."""
    statements = [create_table_sql(IDENTITIES, dialect)]
    if dialect is Dialect.POSTGRES:
        # Redshift's sort and distribution keys stand for these there.
        statements += [
            f"CREATE INDEX IF NOT EXISTS identities_user_id_idx ON {qualified(IDENTITIES)} "
            "(user_id)",
            f"CREATE INDEX IF NOT EXISTS events_identify_idx ON {qualified(EVENTS)} "
            "(user_id, event_time) WHERE event_type = 'identify'",
        ]
    return [*statements, *identity_views(dialect)]
