"""Pure DataFrame -> DataFrame transforms; the streaming job wires them to sources and sinks."""

from __future__ import annotations

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clickstream_common.schema import EnrichedEvent, columns_of
from clickstream_common.tables import EVENT_COUNTS_MINUTE
from stream_processor.spark_schema import struct_type

EVENT_SCHEMA = struct_type(columns_of(EnrichedEvent))


def user_key() -> SparkColumn:
    """The identity that counts as one user: user_id, else anonymous_id."""
    return F.coalesce(F.col("user_id"), F.col("anonymous_id"))


def parse_events(kafka_records: DataFrame) -> DataFrame:
    """Kafka records -> one row per record with the parsed event and a validity flag.

    Columns: the event fields, `raw` (original text), `kafka_timestamp`, `is_valid`.
    """
    raw = kafka_records.select(
        F.col("value").cast("string").alias("raw"),
        F.col("timestamp").alias("kafka_timestamp"),
    )
    parsed = raw.select(
        "raw", "kafka_timestamp", F.from_json("raw", EVENT_SCHEMA).alias("event")
    ).select("raw", "kafka_timestamp", "event.*")
    is_valid = (
        F.col("event_id").isNotNull()
        & F.col("event_type").isNotNull()
        & F.col("event_time").isNotNull()
        & user_key().isNotNull()
    )
    return parsed.withColumn("is_valid", F.coalesce(is_valid, F.lit(False)))


def raw_zone(kafka_records: DataFrame) -> DataFrame:
    """Original record text, partitioned by the hour Kafka received it."""
    return kafka_records.select(
        F.col("value").cast("string").alias("value"),
        F.date_format("timestamp", "yyyy-MM-dd").alias("date"),
        F.date_format("timestamp", "HH").alias("hour"),
    )


def event_counts_minute(events: DataFrame) -> DataFrame:
    """1-minute tumbling windows x event_type: events and exact unique users.

    Run in update mode: an open window is emitted each time it changes (live figures) and
    its last emission, once the watermark passes, is final.

    `size(collect_set(...))` keeps the set in state, so the count is exact (streaming refuses
    countDistinct, and approx_count_distinct is an estimate).
    """
    counts = events.groupBy(F.window("event_time", "1 minute"), "event_type").agg(
        F.count(F.lit(1)).alias("events"),
        F.size(F.collect_set(user_key())).cast("long").alias("unique_users"),
    )
    return counts.select(
        F.col("window.start").alias("window_start"),
        F.col("window.end").alias("window_end"),
        "event_type",
        "events",
        "unique_users",
    )


def with_batch_id(aggregates: DataFrame, batch_id: int) -> DataFrame:
    """Stamp rows with their micro-batch and select the table's columns in order."""
    return aggregates.withColumn("batch_id", F.lit(batch_id).cast("long")).select(
        *EVENT_COUNTS_MINUTE.column_names
    )
