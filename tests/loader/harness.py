"""The real loader as a process, and an isolated lake + warehouse in a running platform.

Each test gets a bucket and a database of its own, so it can run on the shared stack
without touching the pipeline's data: the shared loader only loads markers of its own
bucket, and the end-to-end test only reads its own database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from clickstream_local.components import child_env
from clickstream_local.config import S3_EVENTS_TOPIC, TOPIC_PARTITIONS, free_ports, repo_root
from clickstream_local.services import service_env
from clickstream_local.stack import Stack
from tests.conftest import RunningStack, read_topic, wait_for
from tests.conftest import group_lag as tests_group_lag


@dataclass
class Lake:
    """A bucket and a warehouse database of one test, in a running platform."""

    stack: Stack
    bucket: str
    database: str
    s3: Any
    admin_dsn: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @classmethod
    def create(cls, running: RunningStack) -> Lake:
        info = running.info
        tag = uuid.uuid4().hex[:8]
        s3 = info.s3_client()
        bucket = f"loader-test-{tag}"
        s3.create_bucket(Bucket=bucket)
        admin_dsn = info.warehouse_dsn.rsplit("/", 1)[0] + "/postgres"
        database = f"loader_test_{tag}"
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {database}")
        return cls(running.stack, bucket, database, s3, admin_dsn, tag)

    @property
    def dsn(self) -> str:
        return self.admin_dsn.rsplit("/", 1)[0] + f"/{self.database}"

    @property
    def kafka_bootstrap(self) -> str:
        return self.stack.config.kafka_bootstrap

    def connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.dsn, autocommit=True)
        conn.execute("SET TIME ZONE 'UTC'")
        return conn

    def loader_env(self, **overrides: str) -> dict[str, str]:
        env = service_env(self.stack.config, "warehouse-loader") | {
            "S3_BUCKET": self.bucket,
            "WAREHOUSE_DSN": self.dsn,
            "LOADER_CONSUMER_GROUP": f"loader-test-{self.tag}",
            "LOADER_METRICS_HOST": "127.0.0.1",
            "LOADER_METRICS_PORT": str(free_ports(1)[0]),
            "LOADER_RETRY_MAX_SECONDS": "2",
            "LOADER_RECONCILE_INTERVAL_SECONDS": "0",
        }
        return env | overrides

    def ledger(self) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return conn.execute(
                "SELECT object_key, etag, table_name, batch_id, status, rows_loaded, reason "
                "FROM analytics.load_ledger ORDER BY object_key"
            ).fetchall()

    def drop(self) -> None:
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(self.admin_dsn, autocommit=True) as conn,
        ):
            conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")


class LoaderProcess:
    """`python -m warehouse_loader` with the given environment; killed by its own pid."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str = "loader") -> None:
        self.env = env
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['LOADER_METRICS_PORT']}"

    def start(self) -> LoaderProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "warehouse_loader"],
                env=child_env(self.env | {"PYTHONUNBUFFERED": "1"}),
                cwd=repo_root(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 60) -> LoaderProcess:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"loader exited: {self.log_tail()}")
            try:
                return httpx.get(f"{self.metrics_url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=timeout, interval=0.2, what="the loader to be ready")
        return self

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def metrics(self) -> str:
        return httpx.get(f"{self.metrics_url}/metrics", timeout=5).text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include `labels` (0 if none)."""
        total = 0.0
        pattern = re.compile(rf"^{re.escape(name)}(\{{(?P<labels>[^}}]*)\}})? (?P<value>\S+)$")
        for line in self.metrics().splitlines():
            match = pattern.match(line)
            if match is None:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(match["value"])
        return total

    def sigkill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


# --- Kafka helpers ------------------------------------------------------------------------


def partitions_of(topic: str) -> list[TopicPartition]:
    # The platform's topics have the contract's counts; the tests' own topics have one.
    return [TopicPartition(topic, p) for p in range(TOPIC_PARTITIONS.get(topic, 1))]


async def _read_all(bootstrap: str, topic: str) -> list[bytes]:
    records = await read_topic(bootstrap, topic, len(partitions_of(topic)))
    return [r.value for r in records if r.value]


def notifications_for(bootstrap: str, bucket: str, topic: str = S3_EVENTS_TOPIC) -> list[bytes]:
    """Every S3 notification on the topic that names `bucket`."""
    marker = f'"name":"{bucket}"'.encode()
    return [v for v in asyncio.run(_read_all(bootstrap, topic)) if marker in v.replace(b" ", b"")]


def announced_markers(notices: list[bytes]) -> int:
    """How many of the notices name a commit marker. Data objects are announced too (the
    loader skips them), so a wait for as many notices as markers races with the last ones."""
    return sum(b"_commits" in v for v in notices)


def every_marker_notice(
    bootstrap: str, bucket: str, markers: int, timeout: float = 60
) -> list[bytes]:
    """The bucket's notices, once versitygw has announced each of its `markers` markers."""
    notices: list[bytes] = wait_for(
        lambda: (
            (n := notifications_for(bootstrap, bucket)) and announced_markers(n) >= markers and n
        ),
        timeout,
        what="versitygw to announce every marker",
    )
    return notices


async def _publish(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


def publish(bootstrap: str, topic: str, values: list[bytes]) -> None:
    asyncio.run(_publish(bootstrap, topic, values))


async def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


def create_topic(bootstrap: str, topic: str) -> None:
    """A topic of the test's own, with one partition (see `partitions_of`)."""
    asyncio.run(_create_topic(bootstrap, topic, 1))


def group_lag(bootstrap: str, group: str, topic: str = S3_EVENTS_TOPIC) -> int:
    return asyncio.run(tests_group_lag(bootstrap, group, topic, len(partitions_of(topic))))


def loader_backends(lake: Lake, only: str = "") -> int:
    """The loader's connections to the lake's database; `only`, a condition more on them."""
    with lake.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'warehouse-loader' "
            f"AND datname = %s {only}",
            (lake.database,),
        ).fetchone()
    return int(row[0]) if row else 0


def copy_in_progress(lake: Lake) -> bool:
    """The loader's backend is inside a COPY in the lake's database right now."""
    return loader_backends(lake, "AND state = 'active' AND query LIKE 'COPY%%'") > 0


def wait_until_equal(get: Any, expected: Any, timeout: float, what: str) -> None:
    last: list[Any] = [None]

    def equal() -> bool:
        last[0] = get()
        return bool(last[0] == expected)

    try:
        wait_for(equal, timeout=timeout, interval=1, what=what)
    except AssertionError:
        got = last[0]
        if isinstance(got, dict) and isinstance(expected, dict):
            diff = {
                k: (len(got.get(k, {})), len(v)) for k, v in expected.items() if got.get(k) != v
            }
            raise AssertionError(f"{what}: differs in (got rows, expected rows) {diff}") from None
        raise
