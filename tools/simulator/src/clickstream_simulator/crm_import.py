"""Import a CRM export as identify calls, through the collector like any SDK's.

    clickstream-crm-import --url https://collect.example.com --write-key crm-key \\
        customers.csv            # or customers.jsonl, s3://bucket/exports/customers.csv.gz

Each record (a CSV row, or a JSON object per line) becomes one `identify` event: the user id
column names the user, every other non-empty field is a trait, and an `updated_at` column,
when present, is the time the traits were true. The warehouse's `analytics.users` shows the
latest traits per user and `analytics.user_traits` their history, whichever SDK or import
sent them.

Event ids derive from the user id and the traits, so importing the same export again adds
nothing, and a record whose traits changed adds one new version. Records that cannot be
events (no user id, traits over the size limit) are named with their line and not sent.
S3 paths are read with the S3_ENDPOINT_URL / AWS_* settings the services use.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from clickstream_common.schema import Event
from clickstream_simulator.sender import DeliveryStats, HttpSender, batched

LIBRARY = {"name": "clickstream-crm-import"}


@dataclass
class ImportResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    # (record number, reason): 1-based lines of a JSON-lines file, data rows of a CSV file
    refused: list[tuple[int, str]] = field(default_factory=list)


def read_text(source: str) -> str:
    """The export's text, from a file or `s3://bucket/key`; `.gz` is decompressed."""
    if source.startswith("s3://"):
        from clickstream_common.settings import S3Settings

        bucket, _, key = source.removeprefix("s3://").partition("/")
        s3 = S3Settings().s3_client()
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    else:
        body = Path(source).read_bytes()
    if source.endswith(".gz"):
        body = gzip.decompress(body)
    return body.decode("utf-8-sig")


def export_format(source: str, given: str | None) -> str:
    if given:
        return given
    name = source.removesuffix(".gz").lower()
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    raise ValueError(f"cannot tell the format of {source!r}: pass --format csv|jsonl")


def records(text: str, fmt: str) -> Iterator[tuple[int, Any]]:
    """(record number, record) for each record; a JSON line that does not parse is a string."""
    if fmt == "csv":
        for number, row in enumerate(csv.DictReader(io.StringIO(text)), start=1):
            yield number, {k: v for k, v in row.items() if k is not None and v not in (None, "")}
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield number, f"not JSON: {exc}"


def event_id_for(user_id: str, traits: dict[str, Any]) -> str:
    """The same user and traits give the same id, whenever they are imported."""
    text = orjson.dumps([user_id, traits], option=orjson.OPT_SORT_KEYS)
    return "crm-" + hashlib.sha256(text).hexdigest()[:40]


def identify_event(
    record: dict[str, Any], user_id_field: str, updated_at_field: str, imported_at: datetime
) -> dict[str, Any]:
    """One export record as a native identify event; ValueError names what is wrong."""
    raw_user = record.get(user_id_field)
    if (
        isinstance(raw_user, bool)
        or not isinstance(raw_user, str | int)
        or not str(raw_user).strip()
    ):
        raise ValueError(f"no user id in field {user_id_field!r}")
    user_id = str(raw_user).strip()
    traits = {k: v for k, v in record.items() if k not in (user_id_field, updated_at_field)}
    updated_at = record.get(updated_at_field)
    event = {
        "event_id": event_id_for(user_id, traits),
        "event_type": "identify",
        "timestamp": updated_at if updated_at not in (None, "") else imported_at.isoformat(),
        "user_id": user_id,
        "properties": {"traits": traits},
        "raw_context": {"library": LIBRARY},
    }
    try:
        Event.model_validate(event)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(problems) from exc
    return event


def build_events(
    items: Iterable[tuple[int, Any]],
    user_id_field: str,
    updated_at_field: str,
    imported_at: datetime,
    max_properties_bytes: int,
) -> ImportResult:
    result = ImportResult()
    for number, record in items:
        if not isinstance(record, dict):
            reason = record if isinstance(record, str) else "record is not a JSON object"
            result.refused.append((number, reason))
            continue
        try:
            event = identify_event(record, user_id_field, updated_at_field, imported_at)
        except ValueError as exc:
            result.refused.append((number, str(exc)))
            continue
        size = len(orjson.dumps(event["properties"]))
        if size > max_properties_bytes:
            result.refused.append(
                (number, f"traits of {size} bytes are over the limit of {max_properties_bytes}")
            )
            continue
        result.events.append(event)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="clickstream-crm-import",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", help="a file path or s3://bucket/key (.gz is decompressed)")
    parser.add_argument("--url", default="http://127.0.0.1:18080", help="collector base URL")
    parser.add_argument("--write-key", required=True, help="a write key (its source name)")
    parser.add_argument("--format", choices=("csv", "jsonl"), help="default: from the name")
    parser.add_argument("--user-id-field", default="user_id")
    parser.add_argument("--updated-at-field", default="updated_at")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument(
        "--max-properties-bytes",
        type=int,
        default=16 * 1024,
        help="the collector's INGEST_MAX_PROPERTIES_BYTES",
    )
    args = parser.parse_args(argv)

    try:
        fmt = export_format(args.source, args.format)
    except ValueError as exc:
        parser.error(str(exc))
    result = build_events(
        records(read_text(args.source), fmt),
        args.user_id_field,
        args.updated_at_field,
        datetime.now(UTC),
        args.max_properties_bytes,
    )
    for number, reason in result.refused:
        print(f"record {number}: not imported: {reason}", file=sys.stderr)
    stats = DeliveryStats()
    sender = HttpSender(args.url, args.write_key)
    try:
        for batch in batched(result.events, args.batch_size):
            sender.send(batch, stats)
    finally:
        sender.close()
    print(
        f"{stats.accepted} identify calls accepted, {stats.rejected} refused by the collector, "
        f"{len(result.refused)} records not imported",
        file=sys.stderr,
    )
    return 0 if not result.refused and not stats.rejected else 1


if __name__ == "__main__":
    sys.exit(main())
