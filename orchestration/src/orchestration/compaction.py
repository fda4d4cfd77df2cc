"""Lake compaction: each hour's small objects rewritten into a few large ones.

The processor writes one object per data set and micro-batch (every 2 s: about 1,800 an hour,
43,000 a day per data set), and so many small objects slow every reader of the lake down
(Athena, Trino and Spark open each one). A daily run rewrites, per zone and hour, the small
objects into objects of about `COMPACTION_TARGET_OBJECT_BYTES`, switching readers over with
the hour's manifest (`orchestration.lakefiles`: new objects, then the manifest, then the
deletion of the old ones). Rows are kept as they are, `batch_id` included, so the Glue
tables' `<name>_current` views and the loader's merge rule see the same data.

An object is rewritten only when nobody still needs it by name:

* the loader reads exactly the objects a commit marker names, once: a processed object is
  rewritten only after its marker is in the load ledger as loaded (a quarantined batch keeps
  its objects, so it can be replayed after a fix), and it is never loaded again (compacted
  objects have no marker);
* the late-data correction pass reads the objects of each new `events` batch by name once:
  those wait until the pass has examined their batch;
* a batch the processor retries rewrites its own objects: nothing younger than
  `COMPACTION_MIN_AGE_SECONDS` is touched.

Stream batches and corrections are compacted apart, so a compacted object of stream batches
can carry the newest batch it holds in its name (`lakefiles.compacted_key`).
"""

from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from clickstream_common.arrow import arrow_schema
from clickstream_common.lake import HOUR
from clickstream_common.tables import EVENTS, TableSpec
from orchestration import warehouse
from orchestration.lakefiles import (
    CompactedObject,
    CompactionManifest,
    LakeObject,
    Zone,
    batch_label,
    compacted_key,
    is_compacted,
    list_hour,
    live_objects,
    marker_key_of,
    read_manifest,
    stream_batch,
    write_manifest,
)
from orchestration.settings import Settings

log = logging.getLogger(__name__)

# Rows per Parquet row group of a compacted object: large enough for readers to skip by
# statistics, small enough to buffer (a row group is built in memory).
ROW_GROUP_ROWS = 262_144
# DeleteObjects takes at most this many keys.
_DELETE_SLICE = 1000

Eligibility = Callable[[LakeObject], str | None]
"""None when an object may be rewritten, else the reason it may not (counted)."""


# --- planning (pure) -------------------------------------------------------------------------


def stream_batch_of(zone: Zone, obj: LakeObject) -> int | None:
    """The newest stream batch an object holds: its own, or the one a compacted name carries."""
    if not zone.processed:
        return None
    if is_compacted(obj.key):
        if obj.name.startswith("batch-"):
            return stream_batch(obj.name[: len("batch-") + 12])
        return None
    label = batch_label(zone, obj.key)
    return stream_batch(label) if label else None


def group_of(zone: Zone, obj: LakeObject) -> str:
    """Outputs never mix stream batches with corrections (see the module docstring)."""
    if not zone.processed:
        return "all"
    return "stream" if stream_batch_of(zone, obj) is not None else "corrections"


@dataclass(frozen=True)
class HourPlan:
    groups: list[list[list[LakeObject]]]  # per group, the inputs of each output object
    skipped: dict[str, int]

    @property
    def inputs(self) -> list[LakeObject]:
        return [o for group in self.groups for chunk in group for o in chunk]


def plan_hour(
    zone: Zone, live: Sequence[LakeObject], eligible: Eligibility, settings: Settings
) -> HourPlan:
    """Which live objects of an hour to rewrite, into which outputs."""
    skipped: dict[str, int] = {}
    groups: dict[str, list[LakeObject]] = {}
    for obj in live:
        if obj.size >= settings.compaction_small_object_bytes:
            reason: str | None = "large enough"
        elif is_compacted(obj.key):
            reason = None  # passed every check when it was made
        else:
            reason = eligible(obj)
        if reason is not None:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        groups.setdefault(group_of(zone, obj), []).append(obj)
    planned = []
    for name in sorted(groups):
        members = groups[name]
        if len(members) < 2:
            skipped["alone"] = skipped.get("alone", 0) + len(members)
            continue
        planned.append(chunks(members, settings.compaction_target_object_bytes))
    return HourPlan(planned, skipped)


def chunks(objects: Sequence[LakeObject], target: int) -> list[list[LakeObject]]:
    """Consecutive runs of objects of about `target` bytes in all (the inputs' size stands
    for the output's: both are compressed the same way)."""
    result: list[list[LakeObject]] = [[]]
    size = 0
    for obj in objects:
        if result[-1] and size + obj.size > target:
            result.append([])
            size = 0
        result[-1].append(obj)
        size += obj.size
    return result


# --- eligibility (reads the ledger and the correction pass's state) --------------------------


def correction_examined(s3: Any, bucket: str) -> int | None:
    """The newest events batch the correction pass has examined for late events (-1 before
    its first run); None when this deployment has no correction pass."""
    try:
        from stream_processor.correction import LakeIndex
    except ImportError:
        return None
    state = LakeIndex(s3, bucket).load_state()
    return int(min(state.windows_examined, state.sessions_examined))


def processed_eligibility(
    zone: Zone,
    objects: Sequence[LakeObject],
    statuses: dict[str, str],
    examined: int | None,
    settings: Settings,
    now: datetime,
) -> Eligibility:
    """The rule for a processed data set's objects (pure: ledger and state passed in)."""
    assert zone.spec is not None
    youngest = now - timedelta(seconds=settings.compaction_min_age_seconds)
    guard_events = zone.spec is EVENTS and settings.compaction_wait_for_correction

    def eligible(obj: LakeObject) -> str | None:
        if obj.last_modified > youngest:
            return "too young"
        label = batch_label(zone, obj.key)
        if label is None:
            return "unknown object"
        status = statuses.get(marker_key_of(zone, label))
        if status == warehouse.QUARANTINED:
            return "quarantined"
        if status != warehouse.LOADED:
            return "not loaded"
        batch = stream_batch(label)
        if guard_events and batch is not None and (examined is None or batch > examined):
            return "not yet examined by the correction pass"
        return None

    return eligible


def age_eligibility(settings: Settings, now: datetime) -> Eligibility:
    youngest = now - timedelta(seconds=settings.compaction_min_age_seconds)
    return lambda obj: "too young" if obj.last_modified > youngest else None


# --- rewriting --------------------------------------------------------------------------------


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A processed object's rows in the data set's current columns: a column the object
    predates is NULL (as the loader reads it); a column the spec does not know is refused."""
    unknown = set(table.column_names) - set(schema.names)
    if unknown:
        raise ValueError(f"columns {sorted(unknown)} are not in the data set's spec")
    columns = [
        table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def rewrite_parquet(
    s3: Any, bucket: str, spec: TableSpec, inputs: Sequence[LakeObject], key: str
) -> CompactedObject:
    """The inputs' rows, in input order, as one Parquet object (zstd, large row groups)."""
    schema = arrow_schema(spec)
    expected = 0
    with tempfile.NamedTemporaryFile(suffix=".parquet") as out:
        writer = pq.ParquetWriter(out.name, schema, compression="zstd")
        pending: list[pa.Table] = []
        buffered = 0
        try:
            for obj in inputs:
                body = s3.get_object(Bucket=bucket, Key=obj.key)["Body"].read()
                table = conform(pq.read_table(io.BytesIO(body)), schema)
                expected += table.num_rows
                pending.append(table)
                buffered += table.num_rows
                if buffered >= ROW_GROUP_ROWS:
                    writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                    pending, buffered = [], 0
            if pending:
                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
        finally:
            writer.close()
        rows = pq.read_metadata(out.name).num_rows
        if rows != expected:  # never switch readers to an object that lost rows
            raise RuntimeError(f"{key}: wrote {rows} rows of {expected}")
        s3.upload_file(out.name, bucket, key)
        size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    return CompactedObject(key=key, bytes=int(size), rows=rows)


def concatenate(s3: Any, bucket: str, inputs: Sequence[LakeObject], key: str) -> CompactedObject:
    """gzip objects joined byte for byte: a gzip file of several members reads as the
    concatenation of their contents, so no record is parsed or changed."""
    expected = sum(o.size for o in inputs)
    with tempfile.NamedTemporaryFile(suffix=".gz") as out:
        for obj in inputs:
            body = s3.get_object(Bucket=bucket, Key=obj.key)["Body"]
            while part := body.read(1 << 20):
                out.write(part)
        out.flush()
        if out.tell() != expected:
            raise RuntimeError(f"{key}: wrote {out.tell()} bytes of {expected}")
        s3.upload_file(out.name, bucket, key)
    return CompactedObject(key=key, bytes=expected)


def delete_objects(s3: Any, bucket: str, keys: Sequence[str]) -> None:
    for start in range(0, len(keys), _DELETE_SLICE):
        part = keys[start : start + _DELETE_SLICE]
        answer = s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in part], "Quiet": True}
        )
        errors = answer.get("Errors") or []
        if errors:
            raise RuntimeError(f"could not delete {len(errors)} objects, e.g. {errors[0]}")


# --- one hour ----------------------------------------------------------------------------------


@dataclass
class HourReport:
    zone: str
    hour: datetime
    objects_before: int = 0
    objects_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    rewritten: int = 0
    written: list[str] = field(default_factory=list)
    leftovers_deleted: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def compact_hour(
    s3: Any,
    bucket: str,
    zone: Zone,
    hour: datetime,
    eligibility: Callable[[Sequence[LakeObject]], Eligibility],
    settings: Settings,
    now: datetime,
) -> HourReport:
    """Compact one hour of one zone; idempotent, and safe to run again after a crash."""
    report = HourReport(zone.name, hour)
    listed = list_hour(s3, bucket, zone, hour)
    manifest = read_manifest(s3, bucket, zone, hour)
    live = live_objects(listed, manifest)
    # What an earlier run left: objects its manifest replaced but that are still there, and
    # compacted objects of a run that stopped before its switch (never read; old enough that
    # no run is still writing them).
    live_keys = {o.key for o in live}
    old_enough = now - timedelta(seconds=settings.compaction_min_age_seconds)
    leftovers = [
        o.key
        for o in listed
        if o.key not in live_keys and (not is_compacted(o.key) or o.last_modified <= old_enough)
    ]
    if leftovers:
        delete_objects(s3, bucket, leftovers)
        report.leftovers_deleted = len(leftovers)
    report.objects_before = report.objects_after = len(live)
    report.bytes_before = report.bytes_after = sum(o.size for o in live)

    plan = plan_hour(zone, live, eligibility(live), settings)
    report.skipped = plan.skipped
    if not plan.groups:
        return report
    outputs: list[CompactedObject] = []
    index = 0
    for group in plan.groups:
        for chunk in group:
            newest = max(
                (stream_batch_of(zone, o) for o in chunk), key=lambda b: -1 if b is None else b
            )
            key = compacted_key(zone, hour, now, index, newest)
            index += 1
            if zone.spec is not None:
                outputs.append(rewrite_parquet(s3, bucket, zone.spec, chunk, key))
            else:
                outputs.append(concatenate(s3, bucket, chunk, key))
    consumed = {o.key for o in plan.inputs}
    kept = [c for c in (manifest.live if manifest else []) if c.key not in consumed]
    switched = CompactionManifest(
        zone=zone.name,
        hour=hour,
        compacted_at=now,
        live=kept + outputs,
        replaced=sorted(consumed),
    )
    write_manifest(s3, bucket, zone, switched)
    delete_objects(s3, bucket, sorted(consumed))
    report.rewritten = len(consumed)
    report.written = [o.key for o in outputs]
    report.objects_after = len(live) - len(consumed) + len(outputs)
    report.bytes_after = (
        report.bytes_before - sum(o.size for o in plan.inputs) + sum(o.bytes for o in outputs)
    )
    log.info(
        "hour compacted",
        extra={
            "zone": zone.name,
            "hour": hour.isoformat(),
            "objects_before": report.objects_before,
            "objects_after": report.objects_after,
        },
    )
    return report


# --- a run ---------------------------------------------------------------------------------------


def hours_of(day: date, lookback_days: int, now: datetime) -> list[datetime]:
    """The hours of `day` and of the `lookback_days - 1` days before it that have begun."""
    first = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=lookback_days - 1)
    hours = [first + k * HOUR for k in range(24 * lookback_days)]
    return [h for h in hours if h < now]


@dataclass
class ZoneReport:
    zone: str
    hours: list[HourReport] = field(default_factory=list)

    @property
    def objects_before(self) -> int:
        return sum(h.objects_before for h in self.hours)

    @property
    def objects_after(self) -> int:
        return sum(h.objects_after for h in self.hours)

    @property
    def bytes_before(self) -> int:
        return sum(h.bytes_before for h in self.hours)

    @property
    def bytes_after(self) -> int:
        return sum(h.bytes_after for h in self.hours)

    def summary(self) -> dict[str, Any]:
        skipped: dict[str, int] = {}
        for h in self.hours:
            for reason, count in h.skipped.items():
                skipped[reason] = skipped.get(reason, 0) + count
        return {
            "zone": self.zone,
            "hours": len(self.hours),
            "hours_compacted": sum(1 for h in self.hours if h.written),
            "objects_before": self.objects_before,
            "objects_after": self.objects_after,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "leftovers_deleted": sum(h.leftovers_deleted for h in self.hours),
            "skipped": skipped,
        }


def compact_zone(
    s3: Any,
    bucket: str,
    zone: Zone,
    hours: Sequence[datetime],
    settings: Settings,
    conn: Any | None,
    now: datetime | None = None,
) -> ZoneReport:
    """Compact the given hours of one zone. `conn` (the warehouse) is needed for processed
    data sets: their objects wait for the load ledger."""
    now = now or datetime.now(UTC)
    examined = correction_examined(s3, bucket) if zone.spec is EVENTS else None

    def eligibility(live: Sequence[LakeObject]) -> Eligibility:
        if not zone.processed:
            return age_eligibility(settings, now)
        if conn is None:
            raise ValueError(f"{zone.name}: the warehouse is needed to compact a data set")
        labels = [batch_label(zone, o.key) for o in live]
        statuses = warehouse.marker_statuses(
            conn, [marker_key_of(zone, label) for label in labels if label]
        )
        return processed_eligibility(zone, live, statuses, examined, settings, now)

    report = ZoneReport(zone.name)
    for hour in hours:
        report.hours.append(compact_hour(s3, bucket, zone, hour, eligibility, settings, now))
    return report
