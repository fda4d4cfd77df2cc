"""The loader process: S3 notifications from Kafka -> committed batches -> warehouse.

Offsets are committed only after every marker in a message is in the warehouse, so a crash
replays notifications, and the load ledger turns each replay into a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

import boto3
import psycopg
from aiokafka import AIOKafkaConsumer
from botocore.exceptions import ClientError
from pydantic import ValidationError

from clickstream_common.logs import configure_logging
from clickstream_common.probes import ProbeServer
from warehouse_loader import metrics, sql
from warehouse_loader.config import Settings
from warehouse_loader.loader import BatchLoader, apply_migrations
from warehouse_loader.notifications import MarkerNotice, markers_in

log = logging.getLogger(__name__)


def s3_client(settings: Settings) -> Any:
    secret = settings.aws_secret_access_key
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.aws_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
    )


class LoaderService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.s3 = s3_client(settings)
        self.conn: psycopg.Connection[Any] | None = None
        self.ready = False

    def _connection(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.settings.warehouse_dsn, autocommit=True)
            apply_migrations(self.conn, sql.migrations(self.settings.warehouse_dialect))
        return self.conn

    def load_with_retry(self, notice: MarkerNotice, stopping: asyncio.Event) -> None:
        delay = 0.5
        while True:
            try:
                result = BatchLoader(self._connection(), self.s3).load(notice)
                self.ready = True
                if not result.loaded:
                    metrics.SKIPPED.labels("already_loaded").inc()
                return
            except psycopg.OperationalError as exc:
                # The warehouse is down or restarting: wait and retry, never skip.
                self.ready = False
                metrics.FAILURES.labels(notice.dataset).inc()
                metrics.RETRIES.inc()
                log.warning(
                    "warehouse unavailable, retrying", extra={"error": str(exc), "delay": delay}
                )
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
            except (ValueError, ValidationError, ClientError, OSError) as exc:
                # An object that cannot be read or parsed will not get better by retrying.
                metrics.QUARANTINED.inc()
                log.error("object quarantined", extra={"marker": notice.key, "error": str(exc)})
                return
            if stopping.is_set():
                raise asyncio.CancelledError
            time.sleep(delay)
            delay = min(delay * 2, self.settings.loader_retry_max_seconds)

    async def run(self, stopping: asyncio.Event) -> None:
        await asyncio.to_thread(self._connection)
        self.ready = True
        consumer = AIOKafkaConsumer(
            self.settings.loader_notifications_topic,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.settings.loader_consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            while not stopping.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=100)
                for records in batches.values():
                    for record in records:
                        notices, skipped = markers_in(record.value or b"")
                        if skipped:
                            metrics.SKIPPED.labels("not_a_commit_marker").inc(skipped)
                        for notice in notices:
                            await asyncio.to_thread(self.load_with_retry, notice, stopping)
                if batches:
                    await consumer.commit()
        finally:
            await consumer.stop()
            if self.conn is not None:
                self.conn.close()


def run() -> None:
    settings = Settings()
    configure_logging("warehouse-loader", settings.log_level)
    service = LoaderService(settings)
    probe = ProbeServer(
        settings.loader_metrics_host, settings.loader_metrics_port, ready=lambda: service.ready
    ).start()

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await service.run(stopping)

    try:
        asyncio.run(main())
    finally:
        probe.stop()
