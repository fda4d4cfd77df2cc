"""The loader process: S3 notifications (Kafka or SQS) -> committed batches -> warehouse.

Notifications are acknowledged only after every marker they announce is in the warehouse
(or quarantined), so a crash replays them, and the load ledger turns each replay into a
no-op. A periodic reconciliation sweep loads committed batches whose notification was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from typing import Any

import psycopg

from clickstream_common.lake import BatchKind
from clickstream_common.logs import configure_logging
from clickstream_common.probes import ProbeServer, run_until_stopped
from clickstream_common.tables import TABLES, Dialect
from warehouse_loader import metrics, sql
from warehouse_loader.config import Settings
from warehouse_loader.errors import is_unavailable
from warehouse_loader.loader import (
    LOADED,
    QUARANTINED,
    BatchLoader,
    LoadResult,
    apply_migrations,
    evolve_schema,
)
from warehouse_loader.notifications import MarkerNotice, normalize_etag, unique_notices
from warehouse_loader.reconcile import (
    advance,
    key_range,
    list_markers,
    list_start,
    notice_for,
    unrecorded,
)
from warehouse_loader.sources import Delivery, Source, make_source

log = logging.getLogger(__name__)


class Stopping(Exception):  # control flow: the process was asked to stop
    """Raised out of a retry loop when the process is asked to stop."""


class LoaderService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.s3 = settings.s3_client()
        self.conn: psycopg.Connection[Any] | None = None
        self.ready = False
        self.stopping = threading.Event()
        self.watermarks: dict[tuple[str, BatchKind], str] = {}

    # --- the warehouse connection -------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            conn = psycopg.connect(
                self.settings.warehouse_dsn,
                autocommit=True,
                connect_timeout=5,
                application_name="warehouse-loader",
            )
            try:
                if self.settings.warehouse_dialect is Dialect.POSTGRES:
                    conn.execute("SET TIME ZONE 'UTC'")
                dialect = self.settings.warehouse_dialect
                apply_migrations(conn, sql.migrations(dialect), dialect)
                evolve_schema(conn, dialect)
            except BaseException:
                conn.close()
                raise
            self.conn = conn
        return self.conn

    def _drop_connection(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def close(self) -> None:
        """Drop the warehouse connection (after a one-off sweep: the scheduled catch-up)."""
        self._drop_connection()

    def _set_ready(self, ready: bool) -> None:
        self.ready = ready
        metrics.READY.set(1 if ready else 0)

    def _backoff(self, delay: float) -> float:
        if self.stopping.wait(delay):
            raise Stopping
        return min(delay * 2, self.settings.loader_retry_max_seconds)

    def connect_with_retry(self) -> None:
        delay = 0.5
        while True:
            try:
                self._connection()
                return
            except psycopg.Error as exc:
                log.warning("warehouse unavailable", extra={"error": str(exc), "delay": delay})
                self._drop_connection()
            delay = self._backoff(delay)

    def loader(self) -> BatchLoader:
        return BatchLoader(
            self._connection(),
            self.s3,
            self.settings.warehouse_dialect,
            iam_role=self.settings.loader_redshift_iam_role,
            manifest_prefix=self.settings.loader_manifest_prefix,
        )

    # --- one marker, whatever it takes ----------------------------------------------------

    def load_with_retry(self, notice: MarkerNotice) -> LoadResult:
        """Load a marker: retry while the warehouse or S3 is unavailable (never skip);
        quarantine after `loader_max_attempts` failures of any other kind."""
        delay = 0.5
        attempts = 0
        while True:
            try:
                result = self.loader().load(notice)
                self._set_ready(True)
                return result
            except Exception as exc:
                metrics.FAILURES.labels(notice.dataset).inc()
                context = {"marker": notice.key, "error": repr(exc), "delay": delay}
                if is_unavailable(exc, self.settings.warehouse_dialect):
                    self._set_ready(False)
                    log.warning("warehouse or lake unavailable, retrying", extra=context)
                    if isinstance(exc, psycopg.Error):
                        self._drop_connection()
                else:
                    attempts += 1
                    log.exception("load failed", extra=context | {"attempt": attempts})
                    self._drop_connection()  # its state is unknown
                    if attempts >= self.settings.loader_max_attempts:
                        quarantined = self._quarantine_failed(notice, exc, attempts)
                        if quarantined is not None:
                            return quarantined
            metrics.RETRIES.inc()
            delay = self._backoff(delay)

    def _quarantine_failed(
        self, notice: MarkerNotice, exc: Exception, attempts: int
    ) -> LoadResult | None:
        reason = f"failed {attempts} times: {exc!r}"
        try:
            etag = notice.etag or normalize_etag(
                self.s3.head_object(Bucket=notice.bucket, Key=notice.key).get("ETag")
            )
            self.loader().quarantine(notice, etag, reason)
        except Exception as failure:
            log.warning("quarantine failed", extra={"error": repr(failure)})
            self._drop_connection()
            return None
        return LoadResult(QUARANTINED, reason=reason)

    # --- the reconciliation sweep ---------------------------------------------------------

    def reconcile(self) -> int:
        """Load committed batches the ledger does not hold; returns how many were loaded."""
        loaded = 0
        for dataset in TABLES:
            for kind in BatchKind:
                loaded += self._reconcile(dataset, kind)
        metrics.SWEEPS.inc()
        return loaded

    def _reconcile(self, dataset: str, kind: BatchKind) -> int:
        bucket = self.settings.s3_bucket
        watermark = self.watermarks.get((dataset, kind), "")
        start = list_start(dataset, kind, watermark)
        try:
            listed = list_markers(self.s3, bucket, dataset, start, kind)
            if not listed:
                return 0
            rows = (
                self._connection()
                .execute(sql.recorded_markers_sql(), (dataset, *key_range(dataset, kind, start)))
                .fetchall()
            )
        except Exception as exc:
            # The next sweep tries again; notifications keep flowing meanwhile.
            log.warning("reconciliation skipped", extra={"table": dataset, "error": repr(exc)})
            if isinstance(exc, psycopg.Error):
                self._drop_connection()
            return 0
        loaded = 0
        recorded = {(str(r[0]), str(r[1])) for r in rows}
        for marker in unrecorded(listed, recorded):
            result = self.load_with_retry(notice_for(bucket, marker))
            if result.status == LOADED:
                loaded += 1
                metrics.RECONCILED.labels(dataset).inc()
                log.warning(
                    "loaded a batch no notification announced",
                    extra={"table": dataset, "marker": marker.key},
                )
            recorded.add((marker.key, marker.etag))
        self.watermarks[(dataset, kind)] = advance(watermark, listed, recorded)
        return loaded

    # --- the main loop --------------------------------------------------------------------

    def _count_skips(self, deliveries: list[Delivery]) -> list[MarkerNotice]:
        notices: list[MarkerNotice] = []
        for delivery in deliveries:
            for reason, count in delivery.skipped.items():
                metrics.SKIPPED.labels(reason).inc(count)
            notices.extend(delivery.notices)
        return unique_notices(notices)

    async def _start_with_retry(self, source: Source) -> None:
        """Wrong credentials or an unreachable source keep the loader up and not ready, with
        the reason in the log, instead of a restart loop."""
        delay = 0.5
        while True:
            try:
                await source.start()
                return
            except Exception as exc:
                log.error(
                    "notification source unavailable, retrying",
                    extra={
                        "error": repr(exc),
                        "source": self.settings.loader_notifications_source.value,
                        "kafka_security": self.settings.describe(),
                        "delay": delay,
                    },
                )
                with contextlib.suppress(Exception):
                    await source.stop()
            delay = await asyncio.to_thread(self._backoff, delay)

    async def run(self) -> None:
        try:
            await asyncio.to_thread(self.connect_with_retry)
        except Stopping:
            return
        source = make_source(self.settings)
        try:
            await self._start_with_retry(source)
        except Stopping:
            return
        self._set_ready(True)
        interval = self.settings.loader_reconcile_interval_seconds
        next_sweep = time.monotonic() if interval > 0 else math.inf
        next_pending = 0.0
        try:
            while not self.stopping.is_set():
                if time.monotonic() >= next_sweep:
                    await asyncio.to_thread(self.reconcile)
                    next_sweep = time.monotonic() + interval
                deliveries = await source.receive()
                for notice in self._count_skips(deliveries):
                    result = await asyncio.to_thread(self.load_with_retry, notice)
                    if result.status not in (LOADED, QUARANTINED):
                        metrics.SKIPPED.labels(result.status).inc()
                if deliveries:
                    await source.ack(deliveries)
                if time.monotonic() >= next_pending:
                    try:
                        pending = await source.pending()
                        if pending is not None:
                            metrics.PENDING.set(pending)
                    except Exception as exc:
                        log.warning("pending count failed", extra={"error": repr(exc)})
                    next_pending = time.monotonic() + 5
        except Stopping:
            log.info("stopping before the notifications in hand were acknowledged")
        finally:
            await source.stop()
            self._drop_connection()


def run() -> None:
    settings = Settings()
    configure_logging("warehouse-loader", settings.log_level)
    service = LoaderService(settings)
    probe = ProbeServer(
        settings.loader_metrics_host, settings.loader_metrics_port, ready=lambda: service.ready
    ).start()
    log.info(
        "loader starting",
        extra={
            "dialect": settings.warehouse_dialect.value,
            "source": settings.loader_notifications_source.value,
            "bucket": settings.s3_bucket,
        },
    )

    run_until_stopped(service.run, service.stopping.set, probe)
