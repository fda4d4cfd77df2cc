"""One hour of the lake as its readers see it, and the manifest that compaction switches.

The lake is partitioned by hour (`date=YYYY-MM-DD/hour=HH`, `clickstream_common.lake`) in
three zones: the processed data sets (Parquet, by their time column), the raw zone (every
consumed record, gzip JSON lines, by Kafka receive time) and `errors/` (the processor's
rejected records, the same way). The processor writes one object per micro-batch into each
of them; compaction (`orchestration.compaction`) rewrites a closed hour's small objects into
a few large ones.

Compaction switches an hour in three steps: it writes the new objects, then the hour's
manifest `<hour>/_compaction.json` (the switch: it names the live compacted objects and the
objects they replace), then deletes the replaced objects. A reader that goes through
`live_objects` sees either the old objects or the new ones, never both and never half: an
object the manifest replaces is skipped even before it is deleted, and a compacted object no
manifest names (left by a run that stopped before its switch) is skipped too. Readers that
list the folder themselves (Athena, Trino and DuckDB over the Glue tables) see identical rows
twice only between the upload of the new objects and the deletion of the old ones; the
`<name>_current` views keep one row per key and batch, so their answers do not change. Names
that start with `_` are hidden from Hive-style readers, which is why the manifest is named so.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel

from clickstream_common.lake import (
    COMMITS_DIR,
    ERRORS_PREFIX,
    PROCESSED_PREFIX,
    RAW_PREFIX,
    batch_label_of,
    partition_path,
)
from clickstream_common.tables import TABLES, TableSpec

MANIFEST_NAME = "_compaction.json"
COMPACTED = "compacted"
_STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"
_STREAM_LABEL = re.compile(r"^batch-(\d{12})$")


@dataclass(frozen=True)
class Zone:
    """A part of the lake partitioned by hour: a processed data set, raw records or errors."""

    name: str
    prefix: str  # without the trailing slash
    suffix: str  # of its data objects
    spec: TableSpec | None = None  # processed data sets only

    @property
    def processed(self) -> bool:
        return self.spec is not None


RAW = Zone("raw", RAW_PREFIX, ".json.gz")
ERRORS = Zone("errors", ERRORS_PREFIX, ".jsonl.gz")


def dataset_zone(spec: TableSpec) -> Zone:
    return Zone(spec.name, f"{PROCESSED_PREFIX}/{spec.name}", ".parquet", spec)


ZONES: dict[str, Zone] = {
    **{name: dataset_zone(spec) for name, spec in TABLES.items()},
    RAW.name: RAW,
    ERRORS.name: ERRORS,
}
"""Every zone compaction looks after, by name (the data sets keep their table names)."""


def hour_prefix(zone: Zone, hour: datetime) -> str:
    return f"{zone.prefix}/{partition_path(hour.astimezone(UTC))}/"


def manifest_key(zone: Zone, hour: datetime) -> str:
    return hour_prefix(zone, hour) + MANIFEST_NAME


@dataclass(frozen=True)
class LakeObject:
    key: str
    size: int
    last_modified: datetime

    @property
    def name(self) -> str:
        return posixpath.basename(self.key)


def is_data_object(zone: Zone, key: str) -> bool:
    """A data object of the zone (not the manifest, not a hidden `_`/`.` file)."""
    name = posixpath.basename(key)
    return key.endswith(zone.suffix) and not name.startswith(("_", "."))


def list_hour(s3: Any, bucket: str, zone: Zone, hour: datetime) -> list[LakeObject]:
    """Every data object under the hour's folder (sub-folders too: the raw zone has them)."""
    found: list[LakeObject] = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=hour_prefix(zone, hour)
    )
    for page in pages:
        for item in page.get("Contents", []):
            if is_data_object(zone, item["Key"]):
                modified = item["LastModified"]
                found.append(LakeObject(item["Key"], int(item["Size"]), modified.astimezone(UTC)))
    found.sort(key=lambda o: o.key)
    return found


# --- names -------------------------------------------------------------------------------


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime(_STAMP_FORMAT)


def is_compacted(key: str) -> bool:
    name = posixpath.basename(key)
    return name.startswith(f"{COMPACTED}-") or f"-{COMPACTED}-" in name


def compacted_key(
    zone: Zone, hour: datetime, written_at: datetime, index: int, newest_stream_batch: int | None
) -> str:
    """The name of a compacted object.

    A compacted object of stream batches is named after the newest batch it holds,
    `batch-<N>-compacted-<stamp>-<i>`: whoever keeps only the objects of batches up to some
    batch (`clickstream_common.lake.stream_batch_of_object`, as the correction pass does)
    keeps it exactly when it would have kept every object it replaces. Other compacted
    objects (of corrections, raw records, errors) are `compacted-<stamp>-<i>`.
    """
    base = f"{COMPACTED}-{stamp(written_at)}-{index:03d}{zone.suffix}"
    if newest_stream_batch is not None:
        base = f"batch-{newest_stream_batch:012d}-{base}"
    return hour_prefix(zone, hour) + base


def batch_label(zone: Zone, key: str) -> str | None:
    """The batch a processed object was written by (`batch-<N>`, `correction-...`), which is
    also its commit marker's name; None for compacted objects and the other zones."""
    if not zone.processed or is_compacted(key):
        return None
    # The executors' objects carry their Spark partition too: `batch-<N>-part-<P>`.
    return batch_label_of(posixpath.basename(key).removesuffix(zone.suffix))


def stream_batch(label: str) -> int | None:
    match = _STREAM_LABEL.match(label)
    return int(match[1]) if match else None


def marker_key_of(zone: Zone, label: str) -> str:
    return f"{zone.prefix}/{COMMITS_DIR}/{label}.json"


# --- the manifest --------------------------------------------------------------------------


class CompactedObject(BaseModel):
    key: str
    bytes: int
    rows: int | None = None  # Parquet outputs; the gzip zones are concatenated, not parsed


class CompactionManifest(BaseModel):
    """The hour's switch: what readers read instead of what, since when."""

    version: int = 1
    zone: str
    hour: datetime
    compacted_at: datetime
    live: list[CompactedObject]  # every compacted object of the hour that counts
    replaced: list[str]  # objects the live ones stand for (deleted after the switch)


def read_manifest(s3: Any, bucket: str, zone: Zone, hour: datetime) -> CompactionManifest | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=manifest_key(zone, hour))["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    return CompactionManifest.model_validate_json(body)


def write_manifest(s3: Any, bucket: str, zone: Zone, manifest: CompactionManifest) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=manifest_key(zone, manifest.hour),
        Body=manifest.model_dump_json(indent=2).encode(),
        ContentType="application/json",
    )


def live_objects(
    listed: Iterable[LakeObject], manifest: CompactionManifest | None
) -> list[LakeObject]:
    """The objects a reader of the hour reads: the manifest's compacted objects and every
    other object it does not replace (batches written since)."""
    live = {o.key for o in manifest.live} if manifest else set()
    replaced = set(manifest.replaced) if manifest else set()
    return [o for o in listed if (o.key in live if is_compacted(o.key) else o.key not in replaced)]


def read_hour(s3: Any, bucket: str, zone: Zone, hour: datetime) -> list[LakeObject]:
    """`live_objects` of one hour, listed and read now."""
    return live_objects(list_hour(s3, bucket, zone, hour), read_manifest(s3, bucket, zone, hour))
