"""Identity stitching: which user each anonymous id belongs to (the `identities` data set).

A visitor browses with an anonymous id and later logs in; from then on the tracker sends
both ids on each event (Segment's, RudderStack's and our tracker's identify, every event
after it), and an alias call names a previous id outright. Each micro-batch of the lake
query derives one row per anonymous id it links to a user, from the valid events it just
wrote, and writes them through the same lake path (objects, commit marker, loader). The
warehouse keeps the first link per anonymous id (`MergeMode.INSERT_NEW`, the oldest batch
wins), so a replayed batch or a later, different link changes nothing.

Pure Arrow functions. In the stream they run on the executors: each Spark partition reduces
its events' links to the earliest per anonymous id, those few rows are shuffled by anonymous
id and reduced again where they are written (`stream_processor.executor_writes`), which gives
the same rows as one reduction over the whole batch. `stitched_user_key` is the same mapping
for Spark frames (the correction pass counts a stitched visitor once).
"""

from __future__ import annotations

from datetime import datetime

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clickstream_common.tables import IDENTITIES
from stream_processor.sinks import LakeWriter, first_per_key, table_for

LINKED_BY_EVENT = "event"
LINKED_BY_ALIAS = "alias"
_ID_LIMIT = 256  # the schema's ShortText bound on user and anonymous ids
_TIME = pa.timestamp("us", tz="UTC")
LINK_SCHEMA = pa.schema(
    [
        ("anonymous_id", pa.string()),
        ("user_id", pa.string()),
        ("first_seen_at", _TIME),
        ("source", pa.string()),
        ("event_id", pa.string()),
        ("linked_by", pa.string()),
    ]
)


def _links(anonymous: pa.Array | pa.ChunkedArray, events: pa.Table, linked_by: str) -> pa.Table:
    return pa.table(
        {
            "anonymous_id": anonymous,
            "user_id": events["user_id"],
            "first_seen_at": events["event_time"].cast(_TIME),
            "source": events["source"],
            "event_id": events["event_id"],
            "linked_by": pa.array([linked_by] * events.num_rows, pa.string()),
        },
        schema=LINK_SCHEMA,
    )


def _event_links(events: pa.Table) -> pa.Table:
    both = pc.and_(pc.is_valid(events["anonymous_id"]), pc.is_valid(events["user_id"]))
    linked = events.filter(pc.and_(both, pc.not_equal(events["anonymous_id"], events["user_id"])))
    return _links(linked["anonymous_id"], linked, LINKED_BY_EVENT)


def previous_id(properties: str | None) -> str | None:
    """An alias call's previous id (`properties.previous_id`, as the Segment mapping keeps it)."""
    if not properties:
        return None
    try:
        document = orjson.loads(properties)
    except orjson.JSONDecodeError:
        return None
    value = document.get("previous_id") if isinstance(document, dict) else None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text[:_ID_LIMIT] if text else None


def _alias_links(events: pa.Table) -> pa.Table:
    aliases = events.filter(
        pc.and_(pc.equal(events["event_type"], "alias"), pc.is_valid(events["user_id"]))
    )
    previous = [previous_id(p) for p in aliases["properties"].to_pylist()]
    aliases = aliases.append_column("previous_id", pa.array(previous, pa.string()))
    keep = pc.and_(
        pc.is_valid(aliases["previous_id"]),
        pc.not_equal(aliases["previous_id"], aliases["user_id"]),
    )
    aliases = aliases.filter(keep)
    return _links(aliases["previous_id"], aliases, LINKED_BY_ALIAS)


def identity_links(events: pa.Table) -> pa.Table:
    """Every link the events carry (one per event with both ids, one per alias call)."""
    return pa.concat_tables([_event_links(events), _alias_links(events)])


def earliest_links(links: pa.Table) -> pa.Table:
    """One row per anonymous id: its earliest link in event time, ties broken by event id,
    how it was linked, source and user (a total order: a retried batch derives the same rows,
    and so does any split of the links into parts, reduced here per part and then again)."""
    if links.num_rows == 0:
        return links
    ordered = links.sort_by(
        [
            ("anonymous_id", "ascending"),
            ("first_seen_at", "ascending"),
            ("event_id", "ascending"),
            ("linked_by", "ascending"),
            ("source", "ascending"),
            ("user_id", "ascending"),
        ]
    )
    return first_per_key(ordered, "anonymous_id")


def identity_rows(events: pa.Table) -> pa.Table:
    """One row per anonymous id the batch links to a user (`earliest_links`)."""
    return earliest_links(identity_links(events))


def write_identities(
    writer: LakeWriter, events: pa.Table, batch_id: int, newest: datetime | None
) -> None:
    """The batch's identity links as the `identities` data set (nothing when it has none)."""
    rows = table_for(IDENTITIES, identity_rows(events), batch_id)
    writer.write_table(IDENTITIES.name, rows, batch_id, IDENTITIES.time_column, newest)


def stitched_user_key(events: DataFrame, identities: DataFrame) -> DataFrame:
    """`events` with `user_key` replaced by the user its anonymous id belongs to, where the
    identities know one: the key a stitched visitor is counted under once."""
    # The warehouse's rule: per anonymous id, the row of the oldest batch.
    first = F.min_by("user_id", F.struct("batch_id", "first_seen_at", "event_id"))
    links = identities.groupBy(F.col("anonymous_id").alias("_stitch_from")).agg(
        first.alias("_stitch_to")
    )
    joined = events.join(links, events["user_key"] == links["_stitch_from"], "left")
    stitched: SparkColumn = F.coalesce(F.col("_stitch_to"), F.col("user_key"))
    return joined.withColumn("user_key", stitched).drop("_stitch_from", "_stitch_to")
