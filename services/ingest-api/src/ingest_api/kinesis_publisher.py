"""Kinesis Data Streams as the collector's bus (INGEST_SINK=kinesis): a `Publisher`.

The same promise as Kafka: `publish` returns only once PutRecords has stored every record, or
raises PublishError (the request gets 503 and stores nothing it was told about). PutRecords is
not all-or-nothing: records it refuses (FailedRecordCount; throttling, internal errors) are
retried, alone, with backoff, until the publish deadline; records it stored are not sent again.
A call that fails as a whole (timeout, connection) is retried the same way; if Kinesis stored
it before the failure, the event is there twice, and the processor's dedup on (source,
event_id) drops the copy, as with a Kafka producer retry.

The partition key is the record's key, the user key, so one user's events go to one shard in
order (a retried record can land after a later one of the same user; the processor orders by
event time, not arrival).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Counter

from clickstream_common.settings import KinesisSettings
from ingest_api import metrics
from ingest_api.publisher import PublishError, Records, WatchedReadiness

log = logging.getLogger(__name__)

# PutRecords limits: 500 records and 5 MiB (data and partition keys) per call.
MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
MAX_PARTITION_KEY_CHARS = 256
# Errors of a whole call that no retry can fix: fail the request at once.
FATAL_ERRORS = frozenset(
    {
        "ResourceNotFoundException",
        "AccessDeniedException",
        "ValidationException",
        "InvalidArgumentException",
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSNotFoundException",
    }
)

RECORD_RETRIES = Counter(
    "ingest_kinesis_record_retries_total",
    "Records PutRecords refused (FailedRecordCount) and the collector sent again",
    ["error"],
)


def partition_key(key: bytes | None, value: bytes) -> str:
    """The user key as Kinesis partition key; hashed when Kinesis would refuse it (empty keys
    spread by the record's own hash)."""
    text = key.decode("utf-8", "replace") if key else ""
    if not text:
        return hashlib.sha256(value).hexdigest()
    if len(text) > MAX_PARTITION_KEY_CHARS:
        return hashlib.sha256(text.encode()).hexdigest()
    return text


def chunks(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Entries in order, cut where a call would pass 500 records or 5 MiB."""
    out: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        entry_size = len(entry["Data"]) + len(entry["PartitionKey"].encode())
        if current and (
            len(current) >= MAX_RECORDS_PER_CALL or size + entry_size > MAX_BYTES_PER_CALL
        ):
            out.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry_size
    if current:
        out.append(current)
    return out


class KinesisPublisher(WatchedReadiness):
    """One aiobotocore client; readiness is DescribeStreamSummary of the events stream."""

    bus = "kinesis"

    def __init__(
        self,
        settings: KinesisSettings,
        timeout_seconds: float,
        check_interval_seconds: float = 2.0,
        client: Any = None,
    ) -> None:
        """Events go to KINESIS_STREAM_NAME, dead letters to KINESIS_DEAD_LETTER_STREAM_NAME.
        `client` is for tests; by default one is created on start."""
        self.settings = settings
        self.timeout_seconds = timeout_seconds
        self.check_interval_seconds = check_interval_seconds
        self.client: Any = client
        self.ready = False
        self._exit = contextlib.AsyncExitStack()
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.client is None:
            config = AioConfig(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=max(1.0, self.timeout_seconds),
                read_timeout=max(1.0, self.timeout_seconds),
                max_pool_connections=64,
            )
            self.client = await self._exit.enter_async_context(
                get_session().create_client(
                    "kinesis",
                    region_name=self.settings.kinesis_region,
                    endpoint_url=self.settings.kinesis_endpoint_url,
                    config=config,
                )
            )
        # The API comes up (not ready) when the stream is unreachable, as with Kafka.
        await self.check()
        self._start_watch()

    async def stop(self) -> None:
        await self._stop_watch()
        await self._exit.aclose()

    async def check(self) -> bool:
        """Readiness: the events stream exists and takes writes."""
        stream = self.settings.kinesis_stream_name
        try:
            async with asyncio.timeout(self.timeout_seconds):
                answer = await self.client.describe_stream_summary(StreamName=stream)
            status = answer["StreamDescriptionSummary"]["StreamStatus"]
            ok = status in ("ACTIVE", "UPDATING")
        except (BotoCoreError, ClientError, TimeoutError, OSError) as exc:
            log.warning("kinesis not reachable", extra={"error": repr(exc), "stream": stream})
            ok = False
        self._set_ready(ok)
        return ok

    async def publish(self, events: Records, dead_letters: Records) -> None:
        """Send both lists to their streams; return only once every record is stored. Each
        list is emptied once its entries are built."""
        if not events and not dead_letters:
            return
        batches = (
            (self.settings.kinesis_stream_name, events),
            (self.settings.kinesis_dead_letter_stream_name, dead_letters),
        )
        begin = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_seconds):
                for stream, records in batches:
                    if not records:
                        continue
                    entries = [
                        {"Data": value, "PartitionKey": partition_key(key, value)}
                        for key, value in records
                    ]
                    records.clear()
                    for chunk in chunks(entries):
                        await self._put_all(stream, chunk)
        except (TimeoutError, BotoCoreError, ClientError, OSError) as exc:
            metrics.KAFKA_ERRORS.inc()
            raise PublishError(f"kinesis: {exc!r}") from exc
        finally:
            metrics.PUBLISH_SECONDS.observe(time.perf_counter() - begin)
        if not self.ready:
            self._set_ready(True)

    async def _put_all(self, stream: str, entries: list[dict[str, Any]]) -> None:
        """PutRecords until every entry is stored; the caller's deadline bounds the retries."""
        pending = entries
        delay = 0.05
        while True:
            try:
                answer = await self.client.put_records(StreamName=stream, Records=pending)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in FATAL_ERRORS:
                    raise
                log.warning("PutRecords failed; retrying", extra={"error": code})
                answer = None
            except (BotoCoreError, OSError) as exc:
                log.warning("PutRecords failed; retrying", extra={"error": repr(exc)})
                answer = None
            if answer is not None:
                if not answer.get("FailedRecordCount"):
                    return
                failed = [
                    (entry, result)
                    for entry, result in zip(pending, answer["Records"], strict=True)
                    if result.get("ErrorCode")
                ]
                for _, result in failed:
                    RECORD_RETRIES.labels(result["ErrorCode"]).inc()
                pending = [entry for entry, _ in failed]
                if not pending:
                    return
            # Full jitter: concurrent requests that were throttled together spread out.
            await asyncio.sleep(random.uniform(0, delay))  # noqa: S311 - not a secret
            delay = min(delay * 2, 1.0)
