"""Pure DataFrame -> DataFrame transforms; the streaming job wires them to sources and sinks.

The stages, in order:

* `parse_records`: Kafka records -> the original bytes, Kafka coordinates and the JSON read
  with the shared schema (every leaf as text, so one bad value never hides the others).
* `clean_events`: typed, trimmed, normalised, flattened columns plus `error_reason`, which is
  NULL for a valid event. Only the lake query runs it; the stateful queries read the events
  it wrote, so a record is valid for the lake exactly when it is valid for the aggregates.
* `lake_batch`: both in one projection, the lake query's one read per micro-batch (the job
  splits it into raw zone, errors and events in Arrow).
* `events`: the valid half of a cleaned frame (the backfill's read of the raw zone).
* `aggregate_columns`, `deduplicate`, `without_bots`, `window_aggregates` + `window_rows`,
  `sessions`: the stateful part, over the lake's events read back (`lake_events_source`);
  `aggregate_input` gives the same input from Kafka records for static frames (the tests,
  the benchmarks). The job splits `window_rows` by data set in Arrow.
"""

from __future__ import annotations

import typing
from datetime import datetime, timedelta
from hashlib import sha256
from typing import Any

from pydantic import BaseModel
from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clickstream_common.schema import (
    CURRENCY_PATTERN,
    DEFAULT_CLOCK_POLICY,
    EARLIEST_TIME,
    EVENT_ID_MAX_LENGTH,
    EVENT_TYPE_PATTERN,
    LATEST_TIME,
    PURCHASE_EVENT_TYPE,
    USER_KEY_FIELDS,
    ClockPolicy,
    EnrichedEvent,
    LogicalType,
    columns_of,
)
from clickstream_common.tables import (
    ACTIVE_USERS_5M,
    ACTIVE_USERS_SPAN,
    EVENT_COUNTS_MINUTE,
    EVENT_DERIVED_COLUMNS,
    EVENT_SOURCE_COLUMNS,
    EVENTS,
    PAGE_VIEWS_MINUTE,
    PRODUCT_STATS_MINUTE,
    TableSpec,
)
from stream_processor.spark_schema import parse_struct_type

EVENT_COLUMNS = columns_of(EnrichedEvent)

# The fields the validity rules read (and the aggregates): validity depends on nothing else.
CORE_FIELDS = (
    "event_id",
    "event_type",
    "timestamp",
    "event_time",
    "received_at",
    "source",
    "user_id",
    "anonymous_id",
    "page_url",
    "product_id",
    "quantity",
    "price",
    "revenue",
    "user_agent_info",
)
FULL_SCHEMA = parse_struct_type(EVENT_COLUMNS)

KAFKA_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp")
ERROR_COLUMNS = (*KAFKA_COLUMNS, "reason", "value")

_PROPERTY_PREFIX = "property_"


def numeric_bounds(model: type[BaseModel], name: str) -> tuple[float | None, float | None]:
    """The ge/le limits a model declares for a numeric field (read, not copied)."""
    low: float | None = None
    high: float | None = None

    def visit(item: Any) -> None:
        nonlocal low, high
        if hasattr(item, "ge") and item.ge is not None:
            low = float(item.ge)
        if hasattr(item, "le") and item.le is not None:
            high = float(item.le)
        for meta in getattr(item, "metadata", None) or ():
            visit(meta)
        for meta in getattr(item, "__metadata__", None) or ():
            visit(meta)
        for arg in typing.get_args(item):
            visit(arg)

    visit(model.model_fields[name].annotation)
    return low, high


# --------------------------------------------------------------------------------------------
# Parsing and cleaning


def parse_records(kafka_records: DataFrame, schema: Any = FULL_SCHEMA) -> DataFrame:
    """Kafka records -> `value` (original bytes), Kafka coordinates, `e` (the parsed JSON)."""
    return kafka_records.select(
        F.col("value"),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.from_json(F.col("value").cast("string"), schema).alias("e"),
    )


def _text(path: str) -> SparkColumn:
    """A trimmed text field; blank becomes NULL (pydantic strips, and '' is no identity)."""
    value = F.trim(F.col(path))
    return F.when(value != "", value)


def _typed(path: str, logical: LogicalType) -> SparkColumn:
    if logical is LogicalType.STRING:
        return _text(path)
    if logical is LogicalType.JSON:
        return F.col(path)
    spark = spark_type_name(logical)
    return _text(path).try_cast(spark)


def spark_type_name(logical: LogicalType) -> str:
    return {
        LogicalType.LONG: "bigint",
        LogicalType.DOUBLE: "double",
        LogicalType.BOOLEAN: "boolean",
        LogicalType.TIMESTAMP: "timestamp",
        LogicalType.STRING: "string",
        LogicalType.JSON: "string",
    }[logical]


def normalise_event_type(raw: SparkColumn) -> SparkColumn:
    """'  Page-View ' -> 'page_view': lower case, separators as underscores."""
    return F.regexp_replace(F.lower(F.trim(raw)), r"[\s\-.]+", "_")


def _in_range(value: SparkColumn, bounds: tuple[float | None, float | None]) -> SparkColumn:
    low, high = bounds
    ok = F.lit(True)
    if low is not None:
        ok = ok & (value >= F.lit(low))
    if high is not None:
        ok = ok & (value <= F.lit(high))
    return value.isNull() | ok


def _in_time_range(value: SparkColumn) -> SparkColumn:
    return value.isNull() | value.between(F.lit(EARLIEST_TIME), F.lit(LATEST_TIME))


def purchase_revenue(event_type: SparkColumn | None = None) -> SparkColumn:
    """`clickstream_common.schema.purchase_revenue` as a column over `event_type`,
    `revenue`, `price` and `quantity` (a parity test holds the two together)."""
    etype = F.col("event_type") if event_type is None else event_type
    return F.when(
        etype == PURCHASE_EVENT_TYPE,
        F.coalesce(
            F.col("revenue"),
            F.col("price") * F.coalesce(F.col("quantity"), F.lit(1)),
            F.lit(0.0),
        ),
    ).otherwise(F.lit(0.0))


def bounded_event_time(
    event_time: SparkColumn,
    received_at: SparkColumn,
    recorded_at: SparkColumn,
    clock: ClockPolicy = DEFAULT_CLOCK_POLICY,
) -> tuple[SparkColumn, SparkColumn]:
    """`ClockPolicy.bound` in Spark, for records from any producer: (the event time to use,
    "ahead" | "behind" | NULL).

    The reference is the receive time, but never later than the time the bus recorded the
    record (`recorded_at`: Kafka's record timestamp, Kinesis' arrival time). A producer that
    bypasses the collector may also send a wrong `received_at`; the bus's time is set by a
    server, per record, and is the same in every query and on every replay, so all queries
    bound an event alike. For the collector's events the reference is their `received_at`,
    which the collector already bounded them by: the second bound changes nothing.
    """
    reference = F.least(received_at, recorded_at)  # least() skips a NULL
    lead = F.unix_micros(event_time) - F.unix_micros(reference)
    ahead_us = int(clock.max_ahead.total_seconds() * 1_000_000)
    behind_us = int(clock.max_behind.total_seconds() * 1_000_000)
    crossed = F.when(lead > ahead_us, F.lit("ahead")).when(lead < -behind_us, F.lit("behind"))
    return F.when(crossed.isNotNull(), reference).otherwise(event_time), crossed


def clean_events(parsed: DataFrame, clock: ClockPolicy = DEFAULT_CLOCK_POLICY) -> DataFrame:
    """Typed, cleaned, flattened event columns + `error_reason` (NULL when valid); the
    validity rules only ever read `CORE_FIELDS`.

    Two projections: the first trims and casts each field once (plus the texts the checks
    need); the second derives the reason and the URL parts from those typed columns. As one
    projection the same trim and cast ran in several checks, and the generated code grew too
    large for the JIT: it cost 20 us per event, more than reading the record from Kafka.
    """
    columns: dict[str, SparkColumn] = {}
    for path, column in EVENT_SOURCE_COLUMNS:
        columns[column.name] = _typed("e." + ".".join(path), column.type).alias(column.name)

    columns["event_type"] = normalise_event_type(F.col("e.event_type")).alias("event_type")
    # Cleaned, not rejected: an unknown currency code is dropped, the event kept.
    currency = F.upper(_text("e.currency"))
    columns["currency"] = F.when(currency.rlike(CURRENCY_PATTERN), currency).alias("currency")
    columns["future_dated"] = F.coalesce(columns["future_dated"], F.lit(False)).alias(
        "future_dated"
    )
    # Texts the checks read beside the typed values: "present but not castable" is an error.
    checked_texts = {
        "event_type": "e.event_type",
        "event_time": "e.event_time",
        "quantity": "e.quantity",
        "price": "e.price",
        "revenue": "e.revenue",
        "is_bot": "e.user_agent_info.is_bot",
    }
    aux = [
        (F.col("e").isNull() | F.col("e.event_id").isNull() & _all_null()).alias("_malformed"),
        *(_text(path).alias(f"_text_{name}") for name, path in checked_texts.items()),
    ]
    typed = parsed.select(*KAFKA_COLUMNS, "value", *columns.values(), *aux)

    def present_but_invalid(name: str, column: str) -> SparkColumn:
        return F.col(f"_text_{name}").isNotNull() & F.col(column).isNull()

    checks: list[tuple[str, SparkColumn]] = [
        ("malformed_json", F.col("_malformed")),
        ("missing_event_id", F.col("event_id").isNull()),
        ("event_id_too_long", F.length("event_id") > EVENT_ID_MAX_LENGTH),
        ("missing_event_type", F.col("_text_event_type").isNull()),
        ("invalid_event_type", ~F.col("event_type").rlike(EVENT_TYPE_PATTERN)),
        ("invalid_timestamp", F.col("timestamp").isNull()),
        ("invalid_event_time", present_but_invalid("event_time", "event_time")),
        ("invalid_received_at", F.col("received_at").isNull()),
        # Times the stores and every client can hold (the schema's range; the collector
        # refuses the rest): Spark holds later years, Python and the loader do not.
        *(
            (f"out_of_range_{name}", ~_in_time_range(F.col(name)))
            for name in ("timestamp", "event_time", "received_at")
        ),
        ("missing_source", F.col("source").isNull()),
        ("missing_identity", F.col("user_id").isNull() & F.col("anonymous_id").isNull()),
    ]
    for name in ("quantity", "price", "revenue"):
        checks.append((f"invalid_{name}", present_but_invalid(name, name)))
        checks.append(
            (f"out_of_range_{name}", ~_in_range(F.col(name), numeric_bounds(EnrichedEvent, name)))
        )
    checks.append(("invalid_is_bot", present_but_invalid("is_bot", "user_agent_info_is_bot")))

    reason: SparkColumn = F.lit(None).cast("string")
    for name, failed in reversed(checks):
        reason = F.when(F.coalesce(failed, F.lit(False)), F.lit(name)).otherwise(reason)

    url = F.col("page_url")
    host = F.lower(F.try_parse_url(url, F.lit("HOST")))
    url_path = F.try_parse_url(url, F.lit("PATH"))
    outputs: dict[str, SparkColumn] = {name: F.col(name) for name in columns}
    # The collector's skew-corrected time; the device time where no correction applies.
    # Bounded by the clock policy before any watermark sees it: one far-future time would
    # otherwise move the watermark of every stateful query and make every later event late.
    device_time = F.coalesce(F.col("event_time"), F.col("timestamp"))
    bounded, crossed = bounded_event_time(
        device_time, F.col("received_at"), F.col("kafka_timestamp"), clock
    )
    outputs["event_time"] = bounded.alias("event_time")
    # Not a field validity reads: cleaned, not rejected.
    claimed = F.when(_in_time_range(F.col("original_event_time")), F.col("original_event_time"))
    outputs["original_event_time"] = F.coalesce(
        claimed, F.when(crossed.isNotNull(), device_time)
    ).alias("original_event_time")
    outputs["event_time_adjusted"] = F.coalesce(F.col("event_time_adjusted"), crossed).alias(
        "event_time_adjusted"
    )
    derived: dict[str, SparkColumn] = {
        "user_key": F.coalesce(*(F.col(c) for c in USER_KEY_FIELDS)).alias("user_key"),
        "page_host": host.alias("page_host"),
        "page_path": F.when(url.isNotNull(), F.coalesce(F.nullif(url_path, F.lit("")), F.lit("/")))
        .otherwise(F.lit(None))
        .alias("page_path"),
    }
    if "properties" in columns:
        promoted = [c for c in EVENT_DERIVED_COLUMNS if c.name.startswith(_PROPERTY_PREFIX)]
        schema = ", ".join(f"`{c.name.removeprefix(_PROPERTY_PREFIX)}` string" for c in promoted)
        props = F.from_json(F.col("properties"), schema)
        for c in promoted:
            name = c.name.removeprefix(_PROPERTY_PREFIX)
            value = F.when(F.trim(props[name]) != "", F.trim(props[name]))
            if c.type is not LogicalType.STRING:
                value = value.try_cast(spark_type_name(c.type))
            derived[c.name] = value.alias(c.name)
    return typed.select(
        *KAFKA_COLUMNS,
        "value",
        *outputs.values(),
        *derived.values(),
        reason.alias("error_reason"),
    )


def _all_null() -> SparkColumn:
    # from_json leaves every field NULL for text that is not a JSON object.
    return (
        F.col("e.event_type").isNull()
        & F.col("e.timestamp").isNull()
        & F.col("e.received_at").isNull()
        & F.col("e.source").isNull()
    )


def events(cleaned: DataFrame) -> DataFrame:
    """Valid events in the events table's column order (without batch_id): the backfill's
    read of the raw zone (`orchestration.backfill`); the stream splits `lake_batch` instead."""
    names = [n for n in EVENTS.column_names if n != "batch_id"]
    return cleaned.where(F.col("error_reason").isNull()).select(*names)


def lake_batch(kafka_records: DataFrame, clock: ClockPolicy = DEFAULT_CLOCK_POLICY) -> DataFrame:
    """One micro-batch for the lake, collected to the driver in one pass: every record's
    original bytes and Kafka coordinates (raw zone, errors), and the event columns."""
    cleaned = clean_events(parse_records(kafka_records), clock=clock)
    names = [n for n in EVENTS.column_names if n != "batch_id"]
    return cleaned.select(*KAFKA_COLUMNS, "value", "error_reason", *names)


# --------------------------------------------------------------------------------------------
# The stateful part


def aggregate_input(
    kafka_records: DataFrame, clock: ClockPolicy = DEFAULT_CLOCK_POLICY
) -> DataFrame:
    """From Kafka records, what the stateful queries read: the valid events as the lake query
    cleans them, narrowed to what the aggregates read. The job reads the same columns back
    from the lake's `events` data set (`lake_events_source`); static frames (the tests, the
    benchmarks) take this path."""
    return aggregate_columns(events(clean_events(parse_records(kafka_records), clock=clock)))


# The cleaned event columns the aggregates and sessions read.
AGGREGATE_SOURCE_COLUMNS = (
    "event_id",
    "source",
    "event_type",
    "event_time",
    "received_at",
    "user_key",
    "page_path",
    "product_id",
    "quantity",
    "price",
    "revenue",
    "user_agent_info_is_bot",
)


def aggregate_columns(events: DataFrame) -> DataFrame:
    """Cleaned valid events (a stream's, or the lake's `events` data set read back by the
    correction pass) narrowed to what the aggregates and sessions read."""
    *plain, is_bot = AGGREGATE_SOURCE_COLUMNS
    return events.select(*plain, F.coalesce(F.col(is_bot), F.lit(False)).alias("is_bot"))


def deduplicate(events: DataFrame, watermark_delay: str) -> DataFrame:
    """Watermark on event time, then one row per event (`EVENTS.key`: an event id is unique
    within its source) within the watermark.

    In a stream, Spark drops rows behind the watermark here (they are counted as late);
    on a static frame it just drops duplicates.
    """
    key = list(EVENTS.key)
    if not events.isStreaming:
        return events.dropDuplicates(key)
    return events.withWatermark("event_time", watermark_delay).dropDuplicatesWithinWatermark(key)


def without_bots(events: DataFrame, exclude_bots: bool) -> DataFrame:
    return events.where(~F.col("is_bot")) if exclude_bots else events


# Tags of the one grouped aggregation that serves the four windowed data sets.
WINDOW_DATASETS = (EVENT_COUNTS_MINUTE, ACTIVE_USERS_5M, PAGE_VIEWS_MINUTE, PRODUCT_STATS_MINUTE)


def window_aggregates(events: DataFrame) -> DataFrame:
    """Every windowed figure in one stateful aggregation, keyed by (dataset, window, dim).

    `window(event_time, 5 min, 1 min)` gives each event its five 5-minute windows (for
    active users); the one of them whose last minute holds the event also stands for the
    event's 1-minute window, so the per-minute data sets share the same grouping column and
    the state of a window is dropped once the watermark passes its end. Unique counts are
    `size(collect_set(...))` over state: exact, unlike an HLL sketch.
    """
    w = F.window("event_time", f"{ACTIVE_USERS_SPAN // timedelta(minutes=1)} minutes", "1 minute")
    last_minute = F.col("event_time") >= F.col("w.end") - F.expr("INTERVAL 1 MINUTE")
    etype = F.col("event_type")

    def tag(dataset: TableSpec, dim: SparkColumn, unique: bool, when: SparkColumn) -> SparkColumn:
        return F.when(
            when,
            F.struct(
                F.lit(dataset.name).alias("dataset"),
                dim.cast("string").alias("dim"),
                (F.col("user_key") if unique else F.lit(None).cast("string")).alias("uk"),
            ),
        )

    active = tag(ACTIVE_USERS_5M, F.lit(""), True, F.lit(True))
    every = F.array(
        active,
        tag(EVENT_COUNTS_MINUTE, etype, True, last_minute),
        tag(
            PAGE_VIEWS_MINUTE,
            F.col("page_path"),
            True,
            last_minute & (etype == "page_view") & F.col("page_path").isNotNull(),
        ),
        tag(
            PRODUCT_STATS_MINUTE,
            F.col("product_id"),
            False,
            last_minute & F.col("product_id").isNotNull(),
        ),
    )
    # Four of an event's five windows only count it as active: a one-tag array there, so
    # explode makes 8 rows per event instead of 20 to filter.
    tags = F.when(last_minute, every).otherwise(F.array(active))
    exploded = (
        events.select("*", w.alias("w"))
        # explode + a NULL filter, not a higher-order filter(): that one is interpreted.
        .select("*", F.explode(tags).alias("t"))
        .where(F.col("t").isNotNull())
        .select(
            "w",
            F.col("t.dataset").alias("dataset"),
            F.col("t.dim").alias("dim"),
            F.col("t.uk").alias("uk"),
            "event_type",
            "quantity",
            "price",
            "revenue",
            "received_at",
        )
    )
    is_purchase = etype == PURCHASE_EVENT_TYPE
    units = F.when(is_purchase, F.coalesce(F.col("quantity"), F.lit(1)))
    revenue = purchase_revenue(etype)
    return exploded.groupBy("dataset", "w", "dim").agg(
        F.count(F.lit(1)).alias("n"),
        F.size(F.collect_set("uk")).cast("long").alias("users"),
        F.count_if(etype == "product_view").alias("views"),
        F.count_if(etype == "add_to_cart").alias("add_to_carts"),
        F.count_if(is_purchase).alias("purchases"),
        F.coalesce(F.sum(units), F.lit(0)).cast("long").alias("units"),
        F.coalesce(F.sum(revenue), F.lit(0.0)).cast("double").alias("revenue"),
        # Not a table column: the newest receive time behind a row, for freshness.
        F.max("received_at").alias("max_received_at"),
    )


def window_rows(aggregates: DataFrame) -> DataFrame:
    """The combined aggregation in table terms: one row per data set and key, with every
    windowed table's columns (a table reads its own; the others are NULL for its rows)."""
    ds = F.col("dataset")
    minute_start = F.col("w.end") - F.expr("INTERVAL 1 MINUTE")

    def only(table: TableSpec, value: SparkColumn) -> SparkColumn:
        return F.when(ds == table.name, value)

    return aggregates.select(
        "dataset",
        F.when(ds == ACTIVE_USERS_5M.name, F.col("w.start"))
        .otherwise(minute_start)
        .alias("window_start"),
        F.col("w.end").alias("window_end"),
        only(EVENT_COUNTS_MINUTE, F.col("dim")).alias("event_type"),
        only(EVENT_COUNTS_MINUTE, F.col("n")).alias("events"),
        only(EVENT_COUNTS_MINUTE, F.col("users")).alias("unique_users"),
        only(ACTIVE_USERS_5M, F.col("users")).alias("active_users"),
        only(PAGE_VIEWS_MINUTE, F.col("dim")).alias("page_path"),
        F.when(ds == PAGE_VIEWS_MINUTE.name, F.col("n"))
        .when(ds == PRODUCT_STATS_MINUTE.name, F.col("views"))
        .alias("views"),
        only(PAGE_VIEWS_MINUTE, F.col("users")).alias("unique_visitors"),
        only(PRODUCT_STATS_MINUTE, F.col("dim")).alias("product_id"),
        *(
            only(PRODUCT_STATS_MINUTE, F.col(c)).alias(c)
            for c in ("add_to_carts", "purchases", "units", "revenue")
        ),
        "max_received_at",
    )


def session_key(user_key: str, session_start: datetime) -> str:
    """The stable id of a session (the same formula as the Spark expression below)."""
    text = f"{user_key}|{session_start:%Y-%m-%dT%H:%M:%S.%f}Z"
    return sha256(text.encode()).hexdigest()[:32]


def _session_key(user_key: SparkColumn, start: SparkColumn) -> SparkColumn:
    text = F.concat_ws("|", user_key, F.date_format(start, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'"))
    return F.substring(F.sha2(text, 256), 1, 32)


def sessions(events: DataFrame, gap: str) -> DataFrame:
    """Per user, runs of events without a pause longer than `gap` (session windows).

    In a stream this runs in append mode: Spark emits a session once the watermark has
    passed its last event plus the gap, i.e. when no later event can extend or merge it.
    """
    etype = F.col("event_type")
    order = F.struct("event_time", "event_id")
    aggregated = events.groupBy("user_key", F.session_window("event_time", gap).alias("s")).agg(
        F.min("event_time").alias("session_start"),
        F.max("event_time").alias("session_end"),
        F.count(F.lit(1)).alias("events"),
        F.count_if(etype == "page_view").alias("page_views"),
        F.size(F.collect_set(F.when(etype == "product_view", F.col("product_id"))))
        .cast("long")
        .alias("products_viewed"),
        F.max(etype == "purchase").alias("converted"),
        F.coalesce(F.sum(purchase_revenue(etype)), F.lit(0.0)).cast("double").alias("revenue"),
        F.min_by("page_path", F.when(F.col("page_path").isNotNull(), order)).alias("entry_page"),
        F.max_by("page_path", F.when(F.col("page_path").isNotNull(), order)).alias("exit_page"),
        F.max("received_at").alias("max_received_at"),
    )
    return aggregated.select(
        _session_key(F.col("user_key"), F.col("session_start")).alias("session_key"),
        "user_key",
        "session_start",
        "session_end",
        (
            (F.unix_micros(F.col("session_end")) - F.unix_micros(F.col("session_start")))
            / F.lit(1_000_000.0)
        )
        .cast("double")
        .alias("duration_seconds"),
        "events",
        "page_views",
        "products_viewed",
        F.coalesce(F.col("converted"), F.lit(False)).alias("converted"),
        "revenue",
        "entry_page",
        "exit_page",
        "max_received_at",
    )
