"""Realistic processed outputs for the loader tests, computed in plain Python.

Simulator sessions are enriched like the collector does, split into micro-batches the way
events arrive (mostly in time order, some late), and aggregated per batch like the stream
processor in update mode: each batch emits the windows it touched with their values so far.
The expected warehouse is then: per key, the newest batch's row (upsert tables) or the
oldest batch's row (events, deduplicated on event_id).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clickstream_common.arrow import arrow_schema
from clickstream_common.lake import (
    BatchName,
    CommitMarker,
    CommittedObject,
    commit_marker_key,
    processed_object_key,
)
from clickstream_common.schema import LogicalType
from clickstream_common.tables import TABLES, MergeMode, TableSpec
from clickstream_simulator.generator import ClickstreamGenerator

if TYPE_CHECKING:
    from tests.loader.harness import Lake

# Values that break naive CSV or text handling; some events carry them.
AWKWARD_QUERIES = ('say "hi", then\nleave', "", "café ☕ 😀", "back\\slash\ttab", "NULL")


def to_table(spec: TableSpec, rows: list[dict[str, Any]]) -> pa.Table:
    columns = {c.name: [r.get(c.name) for r in rows] for c in spec.columns}
    return pa.table(columns, schema=arrow_schema(spec))


def minute_of(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def _browser(user_agent: str) -> tuple[str, str]:
    if "Android" in user_agent:
        return "Chrome Mobile", "mobile"
    if "iPhone" in user_agent:
        return "Mobile Safari", "mobile"
    if "Chrome" in user_agent:
        return "Chrome", "desktop"
    return "Safari", "desktop"


def enrich(raw: dict[str, Any], index: int) -> dict[str, Any]:
    """An events-table row (before batch_id) from a simulator event, like the pipeline's."""
    ts = datetime.fromisoformat(raw["timestamp"]).astimezone(UTC)
    url = urlparse(raw["page_url"])
    utm = {k: v[0] for k, v in parse_qs(url.query).items()}
    context = raw.get("context") or {}
    properties = raw.get("properties")
    browser, device = _browser(context.get("user_agent", ""))
    search = raw.get("search_query")
    if search is not None and index % 7 == 0:
        search = AWKWARD_QUERIES[index % len(AWKWARD_QUERIES)]
    return {
        "event_id": raw["event_id"],
        "event_type": raw["event_type"],
        "timestamp": ts,
        "user_id": raw.get("user_id"),
        "anonymous_id": raw.get("anonymous_id"),
        "session_id": raw.get("session_id"),
        "page_url": raw.get("page_url"),
        "referrer": raw.get("referrer"),
        "product_id": raw.get("product_id"),
        "search_query": search,
        "quantity": raw.get("quantity"),
        "price": raw.get("price"),
        "revenue": raw.get("revenue"),
        "currency": raw.get("currency"),
        "properties": json.dumps(properties) if properties is not None else None,
        "context_user_agent": context.get("user_agent"),
        "context_locale": context.get("locale"),
        "context_screen_width": 1440 if device == "desktop" else 390,
        "context_screen_height": 900 if device == "desktop" else 844,
        "source": "web",
        "received_at": ts + timedelta(milliseconds=180 + index % 50),
        "sent_at": ts + timedelta(milliseconds=90),
        "event_time": ts,
        "future_dated": False,
        "client_ip": f"203.0.113.{index % 3 * 64}",
        "campaign_source": utm.get("utm_source"),
        "campaign_medium": utm.get("utm_medium"),
        "campaign_name": utm.get("utm_campaign"),
        "user_agent_info_browser_family": browser,
        "user_agent_info_device_class": device,
        "user_agent_info_is_bot": False,
        "referrer_host": urlparse(raw["referrer"]).hostname if raw.get("referrer") else None,
        "user_key": raw.get("user_id") or raw["anonymous_id"],
        "page_host": url.hostname,
        "page_path": url.path or "/",
        "property_order_id": (properties or {}).get("order_id"),
        "property_items": (properties or {}).get("items"),
    }


def _counts_minute(events: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        groups[(minute_of(e["event_time"]), e["event_type"])].append(e)
    return {
        key: {
            "window_start": key[0],
            "window_end": key[0] + timedelta(minutes=1),
            "event_type": key[1],
            "events": len(rows),
            "unique_users": len({r["user_key"] for r in rows}),
        }
        for key, rows in groups.items()
    }


def _active_users(events: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    # 5-minute windows sliding by one minute: an event is in the five windows that cover it.
    users: dict[datetime, set[str]] = defaultdict(set)
    for e in events:
        m = minute_of(e["event_time"])
        for back in range(5):
            users[m - timedelta(minutes=back)].add(e["user_key"])
    return {
        (start,): {
            "window_start": start,
            "window_end": start + timedelta(minutes=5),
            "active_users": len(u),
        }
        for start, u in users.items()
    }


def _page_views(events: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["event_type"] == "page_view":
            groups[(minute_of(e["event_time"]), e["page_path"])].append(e)
    return {
        key: {
            "window_start": key[0],
            "window_end": key[0] + timedelta(minutes=1),
            "page_path": key[1],
            "views": len(rows),
            "unique_visitors": len({r["user_key"] for r in rows}),
        }
        for key, rows in groups.items()
    }


def _product_stats(events: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["product_id"]:
            groups[(minute_of(e["event_time"]), e["product_id"])].append(e)
    result = {}
    for key, rows in groups.items():
        carts = [r for r in rows if r["event_type"] == "add_to_cart"]
        result[key] = {
            "window_start": key[0],
            "window_end": key[0] + timedelta(minutes=1),
            "product_id": key[1],
            "views": sum(r["event_type"] == "product_view" for r in rows),
            "add_to_carts": len(carts),
            "purchases": sum(r["event_type"] == "purchase" for r in rows),
            "units": sum(r["quantity"] or 0 for r in carts),
            "revenue": round(sum((r["price"] or 0) * (r["quantity"] or 0) for r in carts), 2),
        }
    return result


def session_key(user_key: str, start: datetime) -> str:
    return hashlib.sha256(f"{user_key}|{start.isoformat()}".encode()).hexdigest()[:32]


def _session_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    rows = sorted(rows, key=lambda r: r["event_time"])
    start, end = rows[0]["event_time"], rows[-1]["event_time"]
    pages = [r for r in rows if r["event_type"] == "page_view"]
    return {
        "session_key": session_key(rows[0]["user_key"], start),
        "user_key": rows[0]["user_key"],
        "session_start": start,
        "session_end": end,
        "duration_seconds": (end - start).total_seconds(),
        "events": len(rows),
        "page_views": len(pages),
        "products_viewed": len({r["product_id"] for r in rows if r["product_id"]}),
        "converted": any(r["event_type"] == "purchase" for r in rows),
        "revenue": round(sum(r["revenue"] or 0 for r in rows if r["event_type"] == "purchase"), 2),
        "entry_page": pages[0]["page_path"] if pages else None,
        "exit_page": pages[-1]["page_path"] if pages else None,
    }


def _identity_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per anonymous id seen with a user id in the batch: its earliest such event."""
    first: dict[str, dict[str, Any]] = {}
    for e in sorted(events, key=lambda r: (r["event_time"], r["event_id"])):
        anonymous, user = e["anonymous_id"], e["user_id"]
        if anonymous and user and anonymous != user and anonymous not in first:
            first[anonymous] = {
                "anonymous_id": anonymous,
                "user_id": user,
                "first_seen_at": e["event_time"],
                "source": e["source"],
                "event_id": e["event_id"],
                "linked_by": "event",
            }
    return [first[k] for k in sorted(first)]


def _anomaly_rows(so_far: list[dict[str, Any]], minutes: set[datetime]) -> list[dict[str, Any]]:
    """What the anomaly detector would write for the minutes a batch touched: one scored row
    per minute of the event count, scored again (and replaced) when late events reach it."""
    counts: dict[datetime, int] = defaultdict(int)
    for e in so_far:
        counts[minute_of(e["event_time"])] += 1
    return [
        {
            "window_start": m,
            "window_end": m + timedelta(minutes=1),
            "series": "events:total",
            "observed": float(counts[m]),
            "expected": 10.0,
            "expected_low": 4.0,
            "expected_high": 16.0,
            "score": (counts[m] - 10.0) / 1.5,
            "model": "robust-z",
            "detected_at": m + timedelta(minutes=1, seconds=10),
        }
        for m in sorted(minutes)
    ]


AGGREGATES = {
    "event_counts_minute": _counts_minute,
    "active_users_5m": _active_users,
    "page_views_minute": _page_views,
    "product_stats_minute": _product_stats,
}


@dataclass
class LakeBatch:
    batch_id: int
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def build_batches(
    start: datetime, end: datetime, events: int, batches: int, seed: int = 5
) -> list[LakeBatch]:
    """Micro-batches of every data set for simulator traffic in [start, end)."""
    rng = random.Random(seed)
    raw = ClickstreamGenerator(seed=seed).events_between(start, end, events)
    enriched = [enrich(r, i) for i, r in enumerate(raw)]
    per_batch = -(-len(enriched) // batches)
    arrival: list[list[dict[str, Any]]] = [[] for _ in range(batches)]
    for i, event in enumerate(enriched):
        b = i // per_batch
        if rng.random() < 0.15:  # a late arrival, one or two batches later
            b = min(b + rng.choice((1, 2)), batches - 1)
        arrival[b].append(event)
    # Some events arrive twice (a client retry the processor saw after its dedup horizon).
    for b in range(1, batches):
        arrival[b] += [dict(e) for e in rng.sample(arrival[b - 1], k=min(5, len(arrival[b - 1])))]

    result = []
    seen_ids: set[str] = set()
    so_far: list[dict[str, Any]] = []  # deduplicated events up to this batch
    sessions_done: set[str] = set()
    last_session_batch = {}
    for b, events_in in enumerate(arrival):
        for e in events_in:
            last_session_batch[e["session_id"]] = b
    for b, events_in in enumerate(arrival):
        batch_id = 100 + b
        batch = LakeBatch(batch_id)
        batch.rows["events"] = [e | {"batch_id": batch_id} for e in events_in]
        new = [e for e in events_in if e["event_id"] not in seen_ids]
        seen_ids.update(e["event_id"] for e in new)
        so_far += new
        for name, aggregate in AGGREGATES.items():
            touched = set(aggregate(new))
            current = aggregate(so_far)
            batch.rows[name] = [current[k] | {"batch_id": batch_id} for k in sorted(touched)]
        # Sessions are emitted once closed: in the batch that brought their last event.
        closing = [s for s, last in last_session_batch.items() if last == b]
        session_rows = []
        for sid in sorted(closing):
            if sid not in sessions_done:
                sessions_done.add(sid)
                rows = [e for e in so_far if e["session_id"] == sid]
                session_rows.append(_session_row(rows) | {"batch_id": batch_id})
        batch.rows["sessions"] = session_rows
        batch.rows["identities"] = [r | {"batch_id": batch_id} for r in _identity_rows(events_in)]
        touched_minutes = {minute_of(e["event_time"]) for e in new}
        batch.rows["anomalies"] = [
            r | {"batch_id": batch_id} for r in _anomaly_rows(so_far, touched_minutes)
        ]
        result.append(batch)
    return result


def key_of(spec: TableSpec, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in spec.key)


def expected_tables(
    batches: Iterable[LakeBatch],
) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    """Per table: key -> row values in column order, as the warehouse must hold them."""
    result: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = {}
    for name, spec in TABLES.items():
        chosen: dict[tuple[Any, ...], dict[str, Any]] = {}
        for batch in batches:
            for row in batch.rows.get(name, []):
                key = key_of(spec, row)
                held = chosen.get(key)
                newer = held is None or (
                    row["batch_id"] >= held["batch_id"]
                    if spec.merge is MergeMode.UPSERT_LATEST
                    else row["batch_id"] < held["batch_id"]
                )
                if newer:
                    chosen[key] = row
        result[name] = {k: normalized(spec, r) for k, r in chosen.items()}
    return result


def normalized(spec: TableSpec, row: dict[str, Any]) -> tuple[Any, ...]:
    values = []
    for c in spec.columns:
        v = row.get(c.name)
        if c.type is LogicalType.JSON and isinstance(v, str):
            v = json.loads(v)
        if isinstance(v, datetime):
            v = v.astimezone(UTC)
        values.append(v)
    return tuple(values)


def warehouse_tables(conn: Any) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    """What the warehouse holds, in the shape of `expected_tables`."""
    result = {}
    for name, spec in TABLES.items():
        columns = ", ".join(f'"{c}"' for c in spec.column_names)
        rows = conn.execute(f"SELECT {columns} FROM analytics.{name}").fetchall()
        table = {}
        for r in rows:
            row = dict(zip(spec.column_names, r, strict=True))
            table[key_of(spec, {k: _utc(v) for k, v in row.items()})] = normalized(spec, row)
        result[name] = table
    return result


def snapshot(lake: Lake) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    """Every warehouse table as `warehouse_tables` reads it, over a new connection."""
    with lake.connect() as conn:
        return warehouse_tables(conn)


def _utc(v: Any) -> Any:
    return v.astimezone(UTC) if isinstance(v, datetime) else v


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def write_objects(
    s3: Any, bucket: str, dataset: str, batch: int | BatchName, rows: list[dict[str, Any]]
) -> list[CommittedObject]:
    """The batch's Parquet objects, one per date/hour partition (no marker)."""
    spec = TABLES[dataset]
    parts: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        t = row[spec.time_column]
        parts[(f"{t:%Y-%m-%d}", f"{t:%H}")].append(row)
    objects = []
    for (date, hour), part in sorted(parts.items()):
        key = processed_object_key(dataset, date, hour, batch)
        s3.put_object(Bucket=bucket, Key=key, Body=parquet_bytes(to_table(spec, part)))
        objects.append(CommittedObject(key=key, rows=len(part)))
    return objects


def write_batch(
    s3: Any, bucket: str, dataset: str, batch: int | BatchName, rows: list[dict[str, Any]]
) -> CommitMarker | None:
    """Parquet objects per date/hour partition, then the commit marker last (the protocol)."""
    if not rows:
        return None
    name = batch if isinstance(batch, BatchName) else BatchName.stream(batch)
    objects = write_objects(s3, bucket, dataset, name, rows)
    marker = CommitMarker(
        dataset=dataset, batch_id=name.batch_id, objects=objects, committed_at=datetime.now(UTC)
    )
    put_marker(s3, bucket, marker, commit_marker_key(dataset, name))
    return marker


def put_marker(s3: Any, bucket: str, marker: CommitMarker, key: str | None = None) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=key or commit_marker_key(marker.dataset, marker.batch_id),
        Body=marker.model_dump_json().encode(),
        ContentType="application/json",
    )


def write_all(s3: Any, bucket: str, batches: Iterable[LakeBatch]) -> int:
    """Every batch of every data set, in batch order; returns the number of markers."""
    markers = 0
    for batch in batches:
        for dataset, rows in batch.rows.items():
            if write_batch(s3, bucket, dataset, batch.batch_id, rows) is not None:
                markers += 1
    return markers


def big_events(batch_id: int, rows: int, now: datetime, seed: int = 61) -> pa.Table:
    """A large events batch: realistic rows repeated, each with an event id of its own."""
    sample = build_batches(now - timedelta(minutes=50), now, 3000, 1, seed=seed)[0]
    base = to_table(TABLES["events"], sample.rows["events"])
    table = pa.concat_tables([base] * (rows // base.num_rows + 1)).slice(0, rows)
    rng = random.Random(seed)
    ids = pa.array([str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(rows)])
    table = table.set_column(table.schema.get_field_index("event_id"), "event_id", ids)
    batch = pa.array([batch_id] * rows, pa.int64())
    return table.set_column(table.schema.get_field_index("batch_id"), "batch_id", batch)


def write_table_batch(
    s3: Any, bucket: str, dataset: str, batch_id: int, table: pa.Table
) -> CommitMarker:
    """Like `write_batch` for an Arrow table: one object per date/hour, then the marker."""
    spec = TABLES[dataset]
    times = table[spec.time_column]
    keys = pc.binary_join_element_wise(
        pc.strftime(times, format="%Y-%m-%d"), pc.strftime(times, format="%H"), "/"
    )
    objects = []
    for part_key in sorted(pc.unique(keys).to_pylist()):
        date, hour = part_key.split("/")
        part = table.filter(pc.equal(keys, part_key))
        key = processed_object_key(dataset, date, hour, batch_id)
        s3.put_object(Bucket=bucket, Key=key, Body=parquet_bytes(part))
        objects.append(CommittedObject(key=key, rows=part.num_rows))
    marker = CommitMarker(
        dataset=dataset, batch_id=batch_id, objects=objects, committed_at=datetime.now(UTC)
    )
    put_marker(s3, bucket, marker)
    return marker
