"""Test data for the stream processor: events sent straight to Kafka, the lake read back, and
every data set's expected content computed independently in plain Python."""

from __future__ import annotations

import gzip
import hashlib
import io
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import orjson
import pyarrow.parquet as pq
from confluent_kafka import Producer

from clickstream_common.lake import CommitMarker, parse_commit_marker_key
from clickstream_common.schema import purchase_revenue
from clickstream_common.tables import TABLES
from clickstream_simulator.generator import ClickstreamGenerator

EVENTS_TOPIC = "clickstream.events"


def enrich(event: dict[str, Any], received_at: datetime, skew: timedelta) -> dict[str, Any]:
    """What the collector publishes: its receive time and the skew-corrected event time."""
    device = datetime.fromisoformat(event["timestamp"])
    return {
        **event,
        "source": "test",
        "received_at": received_at.isoformat(),
        "event_time": (device + skew).isoformat(),
    }


@dataclass
class Sent:
    """Everything put on the topic, and which of it is a valid event."""

    records: list[bytes] = field(default_factory=list)
    valid: list[dict[str, Any]] = field(default_factory=list)  # first copy of each event
    bad: int = 0


class Sender:
    def __init__(self, bootstrap: str) -> None:
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True}
        )
        self.sent = Sent()
        self._ids: set[str] = set()

    def send(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            key = (event.get("user_id") or event.get("anonymous_id") or "").encode()
            value = orjson.dumps(event)
            self.producer.produce(EVENTS_TOPIC, value, key=key)
            self.sent.records.append(value)
            if event["event_id"] not in self._ids:
                self._ids.add(event["event_id"])
                self.sent.valid.append(event)
        self.producer.flush(30)

    def send_bad(self, values: Iterable[bytes]) -> None:
        for value in values:
            self.producer.produce(EVENTS_TOPIC, value)
            self.sent.records.append(value)
            self.sent.bad += 1
        self.producer.flush(30)


def shopper_events(seed: int, start: datetime, minutes: int, count: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    raw = ClickstreamGenerator(seed=seed).events_between(
        start, start + timedelta(minutes=minutes), count
    )
    # Half the devices run 2 s fast: the collector's corrected time is what counts.
    return [enrich(e, now, timedelta(seconds=-2 if i % 2 else 0)) for i, e in enumerate(raw)]


def simple_event(
    event_id: str, user: str, at: datetime, event_type: str = "page_view"
) -> dict[str, Any]:
    return enrich(
        {
            "event_id": event_id,
            "event_type": event_type,
            "timestamp": at.isoformat(),
            "user_id": user,
            "page_url": "https://shop.example.com/",
        },
        datetime.now(UTC),
        timedelta(0),
    )


# ---------------------------------------------------------------------------------------------
# Reading the lake


class Lake:
    def __init__(self, info: Any) -> None:
        self.bucket = info.s3_bucket
        self.s3 = info.s3_client()

    def keys(self, prefix: str) -> list[str]:
        found: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            found += [o["Key"] for o in page.get("Contents", [])]
        return found

    def get(self, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def markers(self, dataset: str) -> list[CommitMarker]:
        return [
            CommitMarker.model_validate_json(self.get(k))
            for k in self.keys(f"processed/{dataset}/_commits/")
            if parse_commit_marker_key(k)
        ]

    def records_read(self, dataset: str) -> list[int]:
        """Per stream batch of a data set, in order, the records its query had read from the
        bus when it ran (the offsets its commit marker carries; for the stateful queries, the
        end of the lake batch their input reached)."""
        markers = sorted(self.markers(dataset), key=lambda m: m.batch_id)
        return [
            sum(sum(parts.values()) for parts in m.source_offsets.values())
            for m in markers
            if m.source_offsets is not None
        ]

    def committed_rows(self, dataset: str) -> list[dict[str, Any]]:
        """Every row that a commit marker names, with its batch id."""
        rows: list[dict[str, Any]] = []
        for marker in self.markers(dataset):
            for obj in marker.objects:
                table = pq.read_table(io.BytesIO(self.get(obj.key)))
                assert table.num_rows == obj.rows, obj.key
                assert tuple(table.column_names) == TABLES[dataset].column_names
                rows += table.to_pylist()
        return rows

    def final(self, dataset: str) -> dict[tuple[Any, ...], dict[str, Any]]:
        """The data set's value as the warehouse merges it: per key, the newest batch wins
        for windows and sessions, the first for events."""
        spec = TABLES[dataset]
        newest = dataset != "events"
        result: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in sorted(self.committed_rows(dataset), key=lambda r: r["batch_id"]):
            key = tuple(row[k] for k in spec.key)
            if newest or key not in result:
                result[key] = row
        return result

    def raw_records(self) -> Counter[bytes]:
        lines: Counter[bytes] = Counter()
        for key in self.keys("raw/events/"):
            if key.endswith(".gz"):
                lines.update(line for line in gzip.decompress(self.get(key)).split(b"\n") if line)
        return lines

    def errors(self) -> list[dict[str, Any]]:
        return [
            orjson.loads(line)
            for key in self.keys("errors/")
            for line in gzip.decompress(self.get(key)).splitlines()
        ]


# ---------------------------------------------------------------------------------------------
# Expected values, computed independently of Spark


def revenue_of(e: dict[str, Any]) -> float:
    return purchase_revenue(e["event_type"], e.get("revenue"), e.get("price"), e.get("quantity"))


def t(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def user_key(e: dict[str, Any]) -> str:
    return str(e.get("user_id") or e["anonymous_id"])


def minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def page_path(e: dict[str, Any]) -> str | None:
    url = e.get("page_url")
    return (urlparse(url).path or "/") if url else None


def expected_windows(
    events: list[dict[str, Any]],
) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    counts: Counter[tuple[Any, ...]] = Counter()
    users: defaultdict[tuple[Any, ...], set[str]] = defaultdict(set)
    active: defaultdict[datetime, set[str]] = defaultdict(set)
    views: Counter[tuple[Any, ...]] = Counter()
    visitors: defaultdict[tuple[Any, ...], set[str]] = defaultdict(set)
    products: defaultdict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0.0])
    for e in events:
        at, u, kind = t(e["event_time"]), user_key(e), e["event_type"]
        m = minute(at)
        counts[(m, kind)] += 1
        users[(m, kind)].add(u)
        for k in range(5):
            active[m - timedelta(minutes=k)].add(u)
        path = page_path(e)
        if kind == "page_view" and path:
            views[(m, path)] += 1
            visitors[(m, path)].add(u)
        if e.get("product_id"):
            p = products[(m, e["product_id"])]
            p[0] += kind == "product_view"
            p[1] += kind == "add_to_cart"
            if kind == "purchase":
                qty = e.get("quantity") or 1
                p[2] += 1
                p[3] += qty
                p[4] += purchase_revenue(kind, e.get("revenue"), e.get("price"), e.get("quantity"))
    return {
        "event_counts_minute": {k: (n, len(users[k])) for k, n in counts.items()},
        "active_users_5m": {(s,): (len(u),) for s, u in active.items()},
        "page_views_minute": {k: (n, len(visitors[k])) for k, n in views.items()},
        "product_stats_minute": {
            k: (int(v[0]), int(v[1]), int(v[2]), int(v[3]), round(v[4], 6))
            for k, v in products.items()
        },
    }


def lake_windows(lake: Lake) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    def rows(name: str) -> Iterable[dict[str, Any]]:
        return lake.final(name).values()

    return {
        "event_counts_minute": {
            (r["window_start"], r["event_type"]): (r["events"], r["unique_users"])
            for r in rows("event_counts_minute")
        },
        "active_users_5m": {
            (r["window_start"],): (r["active_users"],) for r in rows("active_users_5m")
        },
        "page_views_minute": {
            (r["window_start"], r["page_path"]): (r["views"], r["unique_visitors"])
            for r in rows("page_views_minute")
        },
        "product_stats_minute": {
            (r["window_start"], r["product_id"]): (
                r["views"],
                r["add_to_carts"],
                r["purchases"],
                r["units"],
                round(r["revenue"], 6),
            )
            for r in rows("product_stats_minute")
        },
    }


def session_key(user: str, start: datetime) -> str:
    text = f"{user}|{start:%Y-%m-%dT%H:%M:%S.%f}Z"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def expected_sessions(events: list[dict[str, Any]], gap: timedelta) -> dict[str, tuple[Any, ...]]:
    by_user: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_user[user_key(e)].append(e)
    result: dict[str, tuple[Any, ...]] = {}
    for user, items in by_user.items():
        items.sort(key=lambda e: (t(e["event_time"]), e["event_id"]))
        runs: list[list[dict[str, Any]]] = []
        for e in items:
            if runs and t(e["event_time"]) - t(runs[-1][-1]["event_time"]) < gap:
                runs[-1].append(e)
            else:
                runs.append([e])
        for run in runs:
            start, end = t(run[0]["event_time"]), t(run[-1]["event_time"])
            pages = [page_path(e) for e in run if page_path(e)]
            result[session_key(user, start)] = (
                user,
                start,
                end,
                (end - start).total_seconds(),
                len(run),
                sum(e["event_type"] == "page_view" for e in run),
                len({e["product_id"] for e in run if e["event_type"] == "product_view"}),
                any(e["event_type"] == "purchase" for e in run),
                round(sum(revenue_of(e) for e in run), 6),
                pages[0] if pages else None,
                pages[-1] if pages else None,
            )
    return result


def lake_sessions(lake: Lake) -> dict[str, tuple[Any, ...]]:
    return {
        r["session_key"]: (
            r["user_key"],
            r["session_start"],
            r["session_end"],
            r["duration_seconds"],
            r["events"],
            r["page_views"],
            r["products_viewed"],
            r["converted"],
            round(r["revenue"], 6),
            r["entry_page"],
            r["exit_page"],
        )
        for r in lake.final("sessions").values()
    }


def diff(expected: dict[Any, Any], got: dict[Any, Any]) -> str:
    missing = [k for k in expected if k not in got][:5]
    extra = [k for k in got if k not in expected][:5]
    wrong = [(k, expected[k], got[k]) for k in expected if k in got and got[k] != expected[k]][:5]
    return f"missing={missing} extra={extra} wrong={wrong}"
