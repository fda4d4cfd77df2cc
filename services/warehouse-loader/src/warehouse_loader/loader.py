"""Loading one committed batch: staging, merge and ledger in one transaction."""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from clickstream_common.lake import CommitMarker
from clickstream_common.tables import TABLES, WAREHOUSE_SCHEMA, TableSpec
from warehouse_loader import metrics, sql
from warehouse_loader.notifications import MarkerNotice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadResult:
    loaded: bool
    rows: int


def apply_migrations(conn: psycopg.Connection[Any], steps: list[tuple[int, list[str]]]) -> None:
    """Apply pending schema versions; an advisory lock keeps two loaders from racing."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('clickstream-migrations'))")
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {WAREHOUSE_SCHEMA}")
        conn.execute(sql.create_migrations_table_sql())
        applied = {row[0] for row in conn.execute(f"SELECT version FROM {sql.MIGRATIONS}")}
        for version, statements in steps:
            if version in applied:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"INSERT INTO {sql.MIGRATIONS} (version) VALUES (%s)", (version,))
            log.info("migration applied", extra={"version": version})


def rows_of(table: pa.Table, spec: TableSpec) -> list[tuple[Any, ...]]:
    columns = [table[name].to_pylist() for name in spec.column_names]
    return list(zip(*columns, strict=True))


class BatchLoader:
    def __init__(self, conn: psycopg.Connection[Any], s3: Any) -> None:
        self.conn = conn
        self.s3 = s3

    def load(self, notice: MarkerNotice) -> LoadResult:
        spec = TABLES.get(notice.dataset)
        if spec is None:
            raise ValueError(f"no warehouse table for data set {notice.dataset!r}")
        marker_object = self.s3.get_object(Bucket=notice.bucket, Key=notice.key)
        etag = notice.etag or str(marker_object["ETag"]).strip('"')
        marker = CommitMarker.model_validate_json(marker_object["Body"].read())
        begin = time.perf_counter()
        with self.conn.transaction():
            claimed = self.conn.execute(
                sql.claim_ledger_sql(), (notice.key, etag, spec.name, marker.batch_id)
            ).fetchone()
            if claimed is None:
                return LoadResult(loaded=False, rows=0)
            self.conn.execute(sql.create_staging_sql(spec))
            rows = 0
            statement = sql.copy_from_stdin_sql(spec)
            with self.conn.cursor() as cursor, cursor.copy(statement) as copy:
                for item in marker.objects:
                    body = self.s3.get_object(Bucket=notice.bucket, Key=item.key)["Body"]
                    table = pq.read_table(io.BytesIO(body.read()))
                    for row in rows_of(table, spec):
                        copy.write_row(row)
                        rows += 1
            self.conn.execute(sql.merge_sql(spec))
            self.conn.execute(sql.finish_ledger_sql(), (rows, notice.key, etag))
        metrics.LOAD_SECONDS.labels(spec.name).observe(time.perf_counter() - begin)
        metrics.OBJECTS_LOADED.labels(spec.name).inc(len(marker.objects))
        metrics.ROWS_LOADED.labels(spec.name).inc(rows)
        lag = (datetime.now(UTC) - marker.committed_at).total_seconds()
        metrics.LOAD_LAG.labels(spec.name).observe(max(lag, 0.0))
        log.info(
            "batch loaded",
            extra={
                "table": spec.name,
                "batch_id": marker.batch_id,
                "rows": rows,
                "marker": notice.key,
            },
        )
        return LoadResult(loaded=True, rows=rows)
