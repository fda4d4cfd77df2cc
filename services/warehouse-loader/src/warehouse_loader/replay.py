"""Quarantined batches: list them, and load them again once the cause is fixed.

`python -m warehouse_loader quarantined` lists what `analytics.quarantined_batches` holds;
`python -m warehouse_loader replay --all` (or `--table T [--batch N]`, or `--marker KEY`)
removes each selected ledger row and loads the marker's current version at once, through the
same path as the service (ledger claim, COPY, merge in one transaction). A batch that is
still poison is quarantined again with its new reason, and the command exits 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from clickstream_common.lake import parse_commit_marker_key
from clickstream_common.logs import configure_logging
from warehouse_loader import sql
from warehouse_loader.config import Settings
from warehouse_loader.loader import ALREADY_LOADED, LOADED, LoadResult
from warehouse_loader.notifications import MarkerNotice
from warehouse_loader.service import LoaderService


@dataclass(frozen=True)
class Quarantined:
    marker_key: str
    etag: str
    table_name: str
    batch_id: int
    reason: str
    quarantined_at: datetime | None


def select_quarantined_sql(
    table: str | None, batch_id: int | None, marker_key: str | None
) -> tuple[str, list[Any]]:
    """The quarantined ledger rows matching a selection (pure: statement and parameters)."""
    where = [f"status = '{sql.STATUS_QUARANTINED}'"]
    params: list[Any] = []
    for column, value in (
        ("table_name", table),
        ("batch_id", batch_id),
        ("object_key", marker_key),
    ):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    statement = (
        "SELECT object_key, etag, table_name, batch_id, reason, loaded_at "
        f"FROM {sql.LEDGER} WHERE {' AND '.join(where)} ORDER BY table_name, object_key"
    )
    return statement, params


def release_sql() -> str:
    """Forget a quarantined version, so that it can be claimed and loaded again."""
    return (
        f"DELETE FROM {sql.LEDGER} WHERE object_key = %s AND etag = %s "
        f"AND status = '{sql.STATUS_QUARANTINED}'"
    )


def find_quarantined(
    conn: psycopg.Connection[Any],
    table: str | None = None,
    batch_id: int | None = None,
    marker_key: str | None = None,
) -> list[Quarantined]:
    statement, params = select_quarantined_sql(table, batch_id, marker_key)
    return [
        Quarantined(str(r[0]), str(r[1]), str(r[2]), int(r[3]), str(r[4] or ""), r[5])
        for r in conn.execute(statement, params).fetchall()
    ]


def replay(service: LoaderService, batches: Sequence[Quarantined]) -> list[LoadResult]:
    """Release each quarantined version and load its marker now (the version S3 holds)."""
    results = []
    for batch in batches:
        conn = service.loader().conn
        with conn.transaction():
            conn.execute(release_sql(), (batch.marker_key, batch.etag))
        parsed = parse_commit_marker_key(batch.marker_key)
        dataset, batch_id = parsed if parsed else (batch.table_name, batch.batch_id)
        notice = MarkerNotice(
            bucket=service.settings.s3_bucket,
            key=batch.marker_key,
            etag="",  # whatever version the marker has now
            dataset=dataset,
            batch_id=batch_id,
        )
        results.append(service.load_with_retry(notice))
    return results


def _print_rows(rows: Sequence[Sequence[str]]) -> None:
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m warehouse_loader",
        description="Without a command: run the loader. Commands manage quarantined batches.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("quarantined", help="list quarantined batches")
    again = commands.add_parser("replay", help="load quarantined batches again after a fix")
    for sub in (listing, again):
        sub.add_argument("--table", help="only this table")
        sub.add_argument("--batch", type=int, help="only this batch id")
        sub.add_argument("--marker", help="only this commit marker key")
    again.add_argument("--all", action="store_true", help="every quarantined batch")
    args = parser.parse_args(argv)

    settings = Settings()
    configure_logging("warehouse-loader", settings.log_level)
    service = LoaderService(settings)
    service.connect_with_retry()
    conn = service.loader().conn
    selected = find_quarantined(conn, args.table, args.batch, args.marker)
    if args.command == "quarantined":
        _print_rows(
            [("table", "batch", "marker", "quarantined at", "reason")]
            + [
                (q.table_name, str(q.batch_id), q.marker_key, str(q.quarantined_at), q.reason)
                for q in selected
            ]
        )
        print(f"{len(selected)} quarantined batch(es)")
        return 0
    if not (args.all or args.table or args.batch is not None or args.marker):
        parser.error("replay needs --all, --table, --batch or --marker")
    results = replay(service, selected)
    _print_rows(
        [("table", "batch", "marker", "result", "reason")]
        + [
            (q.table_name, str(q.batch_id), q.marker_key, r.status, r.reason or "")
            for q, r in zip(selected, results, strict=True)
        ]
    )
    failed = [r for r in results if r.status not in (LOADED, ALREADY_LOADED)]
    print(f"{len(results) - len(failed)} of {len(results)} batch(es) loaded")
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover - python -m warehouse_loader.replay
    sys.exit(main(sys.argv[1:]))
