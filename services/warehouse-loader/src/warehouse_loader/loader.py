"""Loading one committed batch: ledger claim, COPY, merge and ledger row in one transaction.

The marker version (key + ETag) is the unit of exactly-once: it is claimed in the same
transaction that writes its rows, so either both commit or neither does. A replay finds the
ledger row and loads nothing; a crash leaves no row and the batch is loaded again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pyarrow as pa
from botocore.exceptions import ClientError
from pydantic import ValidationError

from clickstream_common.lake import PROCESSED_PREFIX, CommitMarker
from clickstream_common.tables import (
    TABLES,
    WAREHOUSE_SCHEMA,
    Dialect,
    MergeMode,
    TableSpec,
    qualified,
)
from warehouse_loader import metrics, sql
from warehouse_loader.batches import (
    PoisonBatch,
    check_footer,
    conformed_batches,
    csv_chunks,
    footer_metadata,
    open_parquet,
)
from warehouse_loader.errors import poison_reason, sqlstate_of
from warehouse_loader.notifications import MarkerNotice, normalize_etag

log = logging.getLogger(__name__)

# A load's outcomes: the ledger's two statuses (named once, in warehouse_loader.sql) and two
# that write no ledger row.
LOADED = sql.STATUS_LOADED
QUARANTINED = sql.STATUS_QUARANTINED
ALREADY_LOADED = "already_loaded"
MARKER_MISSING = "marker_missing"


@dataclass(frozen=True)
class LoadResult:
    status: str
    rows: int = 0
    reason: str | None = None

    @property
    def loaded(self) -> bool:
        return self.status == LOADED


def apply_migrations(
    conn: psycopg.Connection[Any],
    steps: list[tuple[int, list[str]]],
    dialect: Dialect = Dialect.POSTGRES,
) -> list[int]:
    """Apply pending schema versions, each in its own transaction; returns those applied."""
    applied_now: list[int] = []
    for version, statements in steps:
        with conn.transaction():
            if dialect is Dialect.POSTGRES:
                conn.execute(sql.migration_lock_sql(dialect))
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {WAREHOUSE_SCHEMA}")
            conn.execute(sql.create_migrations_table_sql())
            if dialect is Dialect.REDSHIFT:
                conn.execute(sql.migration_lock_sql(dialect))
            done = conn.execute(
                f"SELECT 1 FROM {sql.MIGRATIONS} WHERE version = %s", (version,)
            ).fetchone()
            if done is not None:
                continue
            for statement in statements:
                conn.execute(statement)  # built from trusted specs
            conn.execute(sql.record_migration_sql(dialect), (version,))
            applied_now.append(version)
            log.info("migration applied", extra={"version": version})
    return applied_now


def evolve_schema(conn: psycopg.Connection[Any], dialect: Dialect = Dialect.POSTGRES) -> list[str]:
    """Bring the warehouse up to the current TableSpecs: create tables added since it was
    built, add columns added to a spec (one transaction, under the migration lock). Runs at
    every start after the versioned migrations; returns the statements it ran."""
    with conn.transaction():
        conn.execute(sql.migration_lock_sql(dialect))
        existing: dict[str, set[str]] = {}
        for table, column in conn.execute(sql.existing_columns_sql()).fetchall():
            existing.setdefault(str(table), set()).add(str(column))
        statements = sql.evolve_schema_sql(existing, dialect)
        for statement in statements:
            conn.execute(statement)  # built from trusted specs
    if statements:
        log.info("schema evolved", extra={"statements": statements})
    return statements


def _s3_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _missing(exc: ClientError) -> bool:
    return _s3_code(exc) in ("NoSuchKey", "404", "NotFound")


def _marker_of(notice: MarkerNotice, body: bytes) -> tuple[CommitMarker, TableSpec]:
    """The marker and its table, or poison: a marker that lies about itself is not loaded."""
    try:
        marker = CommitMarker.model_validate_json(body)
    except ValidationError as exc:
        raise PoisonBatch(f"not a valid commit marker: {exc.errors()[0]['msg']}") from exc
    spec = TABLES.get(notice.dataset)
    if spec is None:
        raise PoisonBatch(f"no warehouse table for data set {notice.dataset!r}")
    if marker.dataset != notice.dataset or marker.batch_id != notice.batch_id:
        raise PoisonBatch(
            f"marker names {marker.dataset}/{marker.batch_id}, "
            f"its key {notice.dataset}/{notice.batch_id}"
        )
    prefix = f"{PROCESSED_PREFIX}/{notice.dataset}/"
    for item in marker.objects:
        if not item.key.startswith(prefix) or "/_commits/" in item.key:
            raise PoisonBatch(f"object {item.key!r} is outside {prefix}")
    return marker, spec


class _Prefetch:
    """Download, decode and render CSV on a helper thread while COPY sends the previous chunk.

    Arrow and the S3 client release the GIL, so on two cores this overlaps with PostgreSQL
    parsing the rows. Conformed tables are kept for a second pass (the fast path's fallback).
    """

    _DONE = object()

    def __init__(self, fetch: Any, spec: TableSpec, marker: CommitMarker) -> None:
        self.tables: list[pa.Table] = []
        self._chunks: queue.Queue[Any] = queue.Queue(maxsize=4)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(
            target=self._run, args=(fetch, spec, marker), name="loader-prefetch", daemon=True
        )
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._chunks.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, fetch: Any, spec: TableSpec, marker: CommitMarker) -> None:
        try:
            for item in marker.objects:
                try:
                    parquet = open_parquet(fetch(item.key))
                    for table in conformed_batches(parquet, spec, item.rows):
                        self.tables.append(table)
                        for chunk in csv_chunks(table):
                            if not self._put(chunk):
                                return
                except PoisonBatch as exc:
                    raise PoisonBatch(exc.reason, item.key) from exc
            self._put(self._DONE)
        except BaseException as exc:  # handed to the consuming thread
            self._put(exc)

    def chunks(self) -> Iterator[bytes]:
        while not self._finished:
            item = self._chunks.get()
            if item is self._DONE:
                self._finished = True
                return
            if isinstance(item, BaseException):
                self._finished = True
                raise item
            yield item

    def all_tables(self) -> list[pa.Table]:
        """Every conformed table of the batch (reads past what COPY had not consumed)."""
        for _ in self.chunks():
            pass
        return list(self.tables)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class BatchLoader:
    """Loads committed batches over one warehouse connection (autocommit; explicit txns)."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        s3: Any,
        dialect: Dialect = Dialect.POSTGRES,
        *,
        iam_role: str | None = None,
        manifest_prefix: str = "loader/manifests/",
        fast_insert: bool = True,
    ) -> None:
        self.conn = conn
        self.s3 = s3
        self.dialect = dialect
        self.iam_role = iam_role
        self.manifest_prefix = manifest_prefix
        # INSERT_NEW tables: COPY straight into the target inside a savepoint; only a batch
        # that repeats a stored key takes the staging + merge path.
        self.fast_insert = fast_insert
        if dialect is Dialect.REDSHIFT and not iam_role:
            raise ValueError("the redshift dialect needs LOADER_REDSHIFT_IAM_ROLE")

    # --- entry points -------------------------------------------------------------------

    def load(self, notice: MarkerNotice) -> LoadResult:
        """Load the marker version that S3 holds now, at most once; poison is quarantined."""
        if notice.etag and self.recorded(notice.key, notice.etag):
            return LoadResult(ALREADY_LOADED)  # a replay: not even the marker is read
        try:
            response = self.s3.get_object(Bucket=notice.bucket, Key=notice.key)
            body = response["Body"].read()
        except ClientError as exc:
            if _missing(exc):
                return LoadResult(MARKER_MISSING)
            raise
        etag = normalize_etag(response.get("ETag"))
        if etag != notice.etag and self.recorded(notice.key, etag):
            return LoadResult(ALREADY_LOADED)
        marker: CommitMarker | None = None
        try:
            marker, spec = _marker_of(notice, body)
            result = self._load(notice.bucket, notice.key, etag, marker, spec)
        except PoisonBatch as poison:
            self.quarantine(notice, etag, poison.reason, marker)
            state = sqlstate_of(poison)
            if state:
                metrics.REFUSED.labels(notice.dataset, state).inc()
            return LoadResult(QUARANTINED, reason=poison.reason)
        if result.loaded:
            lag = (datetime.now(UTC) - marker.committed_at).total_seconds()
            metrics.LOAD_LAG.labels(spec.name).observe(max(lag, 0.0))
            metrics.OBJECTS_LOADED.labels(spec.name).inc(len(marker.objects))
            metrics.ROWS_LOADED.labels(spec.name).inc(result.rows)
            metrics.BATCHES_LOADED.labels(spec.name).inc()
            log.info(
                "batch loaded",
                extra={
                    "table": spec.name,
                    "batch_id": marker.batch_id,
                    "rows": result.rows,
                    "objects": len(marker.objects),
                    "marker": notice.key,
                    "lag_seconds": round(lag, 3),
                },
            )
        return result

    def recorded(self, key: str, etag: str) -> bool:
        row = self.conn.execute(sql.ledger_status_sql(), (key, etag)).fetchone()
        return row is not None

    def quarantine(
        self, notice: MarkerNotice, etag: str, reason: str, marker: CommitMarker | None = None
    ) -> None:
        """Set a marker version aside with its reason; the loader goes on with the next one."""
        created = marker.committed_at if marker is not None else None
        values = (notice.key, etag, notice.dataset, notice.batch_id, reason[:4000], created)
        with self.conn.transaction():
            if self.dialect is Dialect.REDSHIFT:
                self.conn.execute(sql.lock_ledger_sql())
                if self.conn.execute(sql.ledger_status_sql(), (notice.key, etag)).fetchone():
                    return
            self.conn.execute(sql.quarantine_sql(self.dialect), values)
        metrics.QUARANTINED.labels(notice.dataset).inc()
        log.error(
            "batch quarantined",
            extra={"table": notice.dataset, "marker": notice.key, "etag": etag, "reason": reason},
        )

    # --- one transaction ----------------------------------------------------------------

    def _claim(self, key: str, etag: str, spec: TableSpec, marker: CommitMarker) -> bool:
        values = (key, etag, spec.name, marker.batch_id, marker.committed_at)
        if self.dialect is Dialect.POSTGRES:
            return self.conn.execute(sql.claim_ledger_sql(), values).fetchone() is not None
        self.conn.execute(sql.lock_ledger_sql())
        if self.conn.execute(sql.ledger_status_sql(), (key, etag)).fetchone() is not None:
            return False
        self.conn.execute(sql.insert_ledger_sql(), values)
        return True

    def _load(
        self, bucket: str, key: str, etag: str, marker: CommitMarker, spec: TableSpec
    ) -> LoadResult:
        try:
            if self.dialect is Dialect.REDSHIFT:
                return self._load_redshift(bucket, key, etag, marker, spec)
            return self._load_postgres(bucket, key, etag, marker, spec)
        except psycopg.Error as exc:
            # The transaction is rolled back. A value the warehouse will never store makes
            # the batch poison; anything else is retried by the caller.
            reason = poison_reason(exc, self.dialect)
            if reason is None:
                raise
            raise PoisonBatch(reason) from exc

    def _fetch(self, bucket: str) -> Any:
        def fetch(object_key: str) -> bytes:
            try:
                body: bytes = self.s3.get_object(Bucket=bucket, Key=object_key)["Body"].read()
            except ClientError as exc:
                if _missing(exc):
                    raise PoisonBatch("named by the commit marker but missing") from exc
                raise
            return body

        return fetch

    def _load_postgres(
        self, bucket: str, key: str, etag: str, marker: CommitMarker, spec: TableSpec
    ) -> LoadResult:
        begin = time.perf_counter()
        if not marker.objects:
            # A batch without rows (its marker records the stream's progress): ledger only.
            with self.conn.transaction():
                if not self._claim(key, etag, spec, marker):
                    return LoadResult(ALREADY_LOADED)
                self.conn.execute(sql.finish_ledger_sql(self.dialect), (0, key, etag))
            return LoadResult(LOADED)
        prefetch = _Prefetch(self._fetch(bucket), spec, marker)
        try:
            with self.conn.transaction():
                if not self._claim(key, etag, spec, marker):
                    return LoadResult(ALREADY_LOADED)
                # The CSV carries timestamps as UTC wall time.
                self.conn.execute("SET LOCAL TIME ZONE 'UTC'")
                rows = self._copy_and_merge(spec, prefetch, marker.batch_id)
                self.conn.execute(sql.finish_ledger_sql(self.dialect), (rows, key, etag))
        finally:
            prefetch.close()
        metrics.LOAD_SECONDS.labels(spec.name).observe(time.perf_counter() - begin)
        return LoadResult(LOADED, rows=rows)

    def _merge_statements(self, spec: TableSpec, batch_id: int) -> list[str]:
        # A correction of sessions first replaces the ranges it covers (clickstream_common.lake).
        return [
            *sql.correction_statements(spec, self.dialect, batch_id),
            *sql.merge_sql(spec, self.dialect),
        ]

    def _copy(self, statement: str, chunks: Iterator[bytes]) -> None:
        with self.conn.cursor() as cursor, cursor.copy(statement) as copy:
            for chunk in chunks:
                copy.write(chunk)

    def _copy_and_merge(self, spec: TableSpec, prefetch: _Prefetch, batch_id: int) -> int:
        begin = time.perf_counter()
        if self.fast_insert and spec.merge is MergeMode.INSERT_NEW:
            try:
                with self.conn.transaction():  # a savepoint
                    self._copy(sql.copy_from_stdin_sql(spec, qualified(spec)), prefetch.chunks())
                metrics.COPY_SECONDS.labels(spec.name).observe(time.perf_counter() - begin)
                return sum(t.num_rows for t in prefetch.tables)
            except psycopg.errors.UniqueViolation:
                # A key the table holds already: merge instead, the stored row stays.
                log.info("batch repeats stored keys, merging", extra={"table": spec.name})
                begin = time.perf_counter()
                tables = prefetch.all_tables()
                chunks: Iterator[bytes] = (c for t in tables for c in csv_chunks(t))
        else:
            chunks = prefetch.chunks()
        self.conn.execute(sql.create_staging_sql(spec, self.dialect))
        self._copy(sql.copy_from_stdin_sql(spec), chunks)
        metrics.COPY_SECONDS.labels(spec.name).observe(time.perf_counter() - begin)
        begin = time.perf_counter()
        for statement in self._merge_statements(spec, batch_id):
            self.conn.execute(statement)
        metrics.MERGE_SECONDS.labels(spec.name).observe(time.perf_counter() - begin)
        return sum(t.num_rows for t in prefetch.tables)

    # --- Redshift -----------------------------------------------------------------------

    def _footer(self, bucket: str, object_key: str) -> tuple[Any, int]:
        """Parquet footer and object size from two ranged GETs; the data stays in S3."""
        try:
            tail = self.s3.get_object(Bucket=bucket, Key=object_key, Range="bytes=-65536")
        except ClientError as exc:
            if _missing(exc):
                raise PoisonBatch("named by the commit marker but missing", object_key) from exc
            raise
        size = int(str(tail.get("ContentRange", "")).rpartition("/")[2] or tail["ContentLength"])
        data: bytes = tail["Body"].read()
        if len(data) >= 8 and data[-4:] == b"PAR1":
            needed = int.from_bytes(data[-8:-4], "little") + 8
            if needed > len(data) and needed <= size:
                more = self.s3.get_object(Bucket=bucket, Key=object_key, Range=f"bytes=-{needed}")
                data = more["Body"].read()
        try:
            return footer_metadata(data), size
        except PoisonBatch as exc:
            raise PoisonBatch(exc.reason, object_key) from exc

    def _load_redshift(
        self, bucket: str, key: str, etag: str, marker: CommitMarker, spec: TableSpec
    ) -> LoadResult:
        sizes: list[tuple[str, int]] = []
        for item in marker.objects:
            metadata, size = self._footer(bucket, item.key)
            try:
                check_footer(metadata, spec, item.rows)
            except PoisonBatch as exc:
                raise PoisonBatch(exc.reason, item.key) from exc
            sizes.append((item.key, size))
        if not sizes:
            source, manifest = None, False
        elif len(sizes) == 1:
            source, manifest = f"s3://{bucket}/{sizes[0][0]}", False
        else:
            manifest_key = (
                f"{self.manifest_prefix}{spec.name}/batch-{marker.batch_id:012d}-{etag}.json"
            )
            self.s3.put_object(
                Bucket=bucket, Key=manifest_key, Body=sql.manifest_json(bucket, sizes)
            )
            source, manifest = f"s3://{bucket}/{manifest_key}", True
        rows = sum(item.rows for item in marker.objects)
        begin = time.perf_counter()
        with self.conn.transaction():
            if not self._claim(key, etag, spec, marker):
                return LoadResult(ALREADY_LOADED)
            if source is not None:
                self.conn.execute(sql.drop_staging_sql(spec))
                self.conn.execute(sql.create_staging_sql(spec, self.dialect))
                copy = sql.copy_from_s3_sql(spec, source, str(self.iam_role), manifest)
                self.conn.execute(copy)
                metrics.COPY_SECONDS.labels(spec.name).observe(time.perf_counter() - begin)
                merge_begin = time.perf_counter()
                for statement in self._merge_statements(spec, marker.batch_id):
                    self.conn.execute(statement)
                self.conn.execute(sql.drop_staging_sql(spec))
                metrics.MERGE_SECONDS.labels(spec.name).observe(time.perf_counter() - merge_begin)
            self.conn.execute(sql.finish_ledger_sql(self.dialect), (rows, key, etag))
        metrics.LOAD_SECONDS.labels(spec.name).observe(time.perf_counter() - begin)
        return LoadResult(LOADED, rows=rows)
