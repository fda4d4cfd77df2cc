"""The platform's parts as supervised processes: Kafka, S3 (versitygw), PostgreSQL, Prometheus.

Each part writes its config under <state>/conf, keeps its data under <state>/data, and has
start/stop/is_ready. `launch` only starts the process, so the Stack can boot slow parts side
by side; `wait_ready` polls with a deadline and `setup` does the idempotent provisioning
(topics, bucket, database).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import uuid
from abc import ABC, abstractmethod
from pathlib import Path

import httpx

from clickstream_local.config import (
    BUCKET,
    DATABASE,
    REGION,
    S3_ACCESS_KEY,
    S3_EVENTS_TOPIC,
    S3_SECRET_KEY,
    TOPIC_PARTITIONS,
    StackConfig,
    repo_root,
)
from clickstream_local.kafka_admin import broker_ready, ensure_topics
from clickstream_local.kafka_tls import LISTENER, SecureListener
from clickstream_local.supervisor import ReadinessError, Supervisor, proc_stat, wait_until

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PROMETHEUS_BIN = Path("/usr/bin/prometheus")
# Inherited variables that would silently reconfigure a child (versitygw reads VGW_* and
# ROOT_*; the JVM reads JAVA_TOOL_OPTIONS/_JAVA_OPTIONS and prints them).
_STRIP_PREFIXES = ("VGW_", "ROOT_ACCESS", "ROOT_SECRET", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIP_PREFIXES)}
    env.update(extra or {})
    return env


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


class Component(ABC):
    """One supervised process; subclasses say how to prepare, run and check it."""

    name: str
    # Parts that must be ready before this one is launched.
    needs: tuple[str, ...] = ()
    start_timeout: float = 60.0
    stop_timeout: float = 20.0

    def __init__(self, config: StackConfig, supervisor: Supervisor) -> None:
        self.config = config
        self.supervisor = supervisor

    @abstractmethod
    def command(self) -> list[str]: ...

    @abstractmethod
    def is_ready(self) -> bool: ...

    def prepare(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Write config files and initialise data dirs (idempotent)."""

    def setup(self) -> str:
        """Provision once ready (idempotent); returns a short note for the progress line."""
        return ""

    def env(self) -> dict[str, str]:
        return child_env()

    def cwd(self) -> Path | None:
        return None

    def user(self) -> str | None:
        return None

    def pid(self) -> int | None:
        return self.supervisor.pid(self.name)

    def is_running(self) -> bool:
        return self.pid() is not None

    def launch(self) -> bool:
        """Start the process unless it runs already; True if it was started now."""
        if self.is_running():
            return False
        self.prepare()
        self.supervisor.start(
            self.name, self.command(), env=self.env(), cwd=self.cwd(), user=self.user()
        )
        return True

    def wait_ready(self, timeout: float | None = None) -> None:
        wait_until(
            self.is_ready,
            timeout if timeout is not None else self.start_timeout,
            self.name,
            abort=lambda: self.supervisor.exit_reason(self.name),
        )
        # A foreign server on our port can answer while our process has died on the bind.
        if (reason := self.supervisor.exit_reason(self.name)) is not None:
            raise ReadinessError(f"{self.name}: {reason}")

    def start(self) -> str:
        self.launch()
        self.wait_ready()
        return self.setup()

    def stop(self) -> bool:
        return self.supervisor.stop(self.name, timeout=self.stop_timeout)


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise RuntimeError("java not found (run local/bootstrap.sh)")
    return found


def _kafka_cluster_id() -> str:
    # Kafka's Uuid text form: 16 random bytes, base64url without padding, not starting with '-'.
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


_KAFKA_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by clickstream_local: broker logs go to stdout, i.e. <state>/logs/kafka.log. -->
<Configuration status="warn">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="stdout"/></Root>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="org.apache.kafka.controller" level="warn"/>
    <Logger name="state.change.logger" level="warn"/>
    <Logger name="kafka.log.LogCleaner" level="warn"/>
  </Loggers>
</Configuration>
"""


class Kafka(Component):
    """A single combined KRaft broker+controller on 127.0.0.1, run from Maven jars."""

    name = "kafka"
    start_timeout = 90.0
    stop_timeout = 30.0

    @property
    def conf_dir(self) -> Path:
        return self.config.conf_dir / "kafka"

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir / "kafka"

    @property
    def secure_listener(self) -> SecureListener | None:
        if not self.config.kafka_secure:
            return None
        return SecureListener(self.conf_dir / "tls", self.config.kafka_secure_port)

    def _classpath(self) -> str:
        libs = self.config.kafka_libs_dir
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise RuntimeError(f"no Kafka jars in {libs} (run local/bootstrap.sh)")
        return f"{libs}/*"

    def _properties(self) -> str:
        c = self.config
        host = "127.0.0.1"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # Static voters: nothing about the controller address is written at format time,
            # so a state dir still boots if its ports change.
            "controller.quorum.voters": f"1@{host}:{c.kafka_controller_port}",
            "listeners": f"PLAINTEXT://{host}:{c.kafka_port},CONTROLLER://{host}:{c.kafka_controller_port}",
            "advertised.listeners": (
                f"PLAINTEXT://{host}:{c.kafka_port},CONTROLLER://{host}:{c.kafka_controller_port}"
            ),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            # 50 partitions (the default) make the first consumer group take seconds.
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.retention.hours": "168",
        }
        if (secure := self.secure_listener) is not None:
            listener = f"{LISTENER}://{host}:{c.kafka_secure_port}"
            props["listeners"] += f",{listener}"
            props["advertised.listeners"] += f",{listener}"
            props["listener.security.protocol.map"] += f",{LISTENER}:SASL_SSL"
            props |= secure.broker_properties()
        lines = ["# Written by clickstream_local; regenerated on every start."]
        lines += [f"{k}={v}" for k, v in props.items()]
        return "\n".join(lines) + "\n"

    def prepare(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if (secure := self.secure_listener) is not None:
            secure.prepare()
        (self.conf_dir / "server.properties").write_text(self._properties())
        (self.conf_dir / "log4j2.xml").write_text(_KAFKA_LOG4J2)
        if (self.data_dir / "meta.properties").is_file():
            return  # formatted before; skip a JVM start
        # -g: leave an already formatted directory alone.
        argv = [
            _java(),
            *self._jvm_flags(),
            "-cp",
            self._classpath(),
            "kafka.tools.StorageTool",
            "format",
            "-g",
            "-t",
            _kafka_cluster_id(),
            "-c",
            str(self.conf_dir / "server.properties"),
        ]
        out = subprocess.run(argv, capture_output=True, text=True, env=child_env(), check=False)
        if out.returncode != 0:
            raise RuntimeError(f"kafka storage format failed:\n{out.stdout}{out.stderr}")

    def _jvm_flags(self) -> list[str]:
        return [
            f"-Dlog4j2.configurationFile={self.conf_dir / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.config.logs_dir / 'kafka'}",
            "-Djava.awt.headless=true",
        ]

    def command(self) -> list[str]:
        heap = self.config.kafka_heap
        return [
            _java(),
            f"-Xmx{heap}",
            f"-Xms{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            *self._jvm_flags(),
            "-cp",
            self._classpath(),
            "kafka.Kafka",
            str(self.conf_dir / "server.properties"),
        ]

    def is_ready(self) -> bool:
        return broker_ready(self.config.kafka_bootstrap, self.config.kafka_port)

    def setup(self) -> str:
        result = ensure_topics(self.config.kafka_bootstrap, TOPIC_PARTITIONS)
        created = [n for n, r in result.items() if r == "created"]
        odd = [f"{n} {r}" for n, r in result.items() if r not in ("created", "exists")]
        note = f"topics: {len(created)} created, {len(result) - len(created)} existed"
        if (secure := self.secure_listener) is not None:
            argv = secure.scram_user_command(
                _java(), self._classpath(), self.config.kafka_bootstrap
            )
            out = subprocess.run(argv, capture_output=True, text=True, env=child_env(), check=False)
            if out.returncode != 0:
                raise RuntimeError(f"kafka: creating the SCRAM user failed:\n{out.stderr}")
            note += f"; SASL_SSL listener on {secure.bootstrap}"
        return note + ("; WARNING " + "; ".join(odd) if odd else "")


# versitygw's filter file: event type -> send? Unlisted types are dropped; the wildcard
# covers Put, Post, Copy and CompleteMultipartUpload.
S3_EVENT_FILTER = {"s3:ObjectCreated:*": True}


class S3(Component):
    """versitygw, posix backend, sending object-created events to Kafka."""

    name = "s3"
    needs = ("kafka",)
    start_timeout = 30.0

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir / "s3"

    @property
    def filter_file(self) -> Path:
        return self.config.conf_dir / "versitygw-event-filter.json"

    def prepare(self) -> None:
        if not self.config.versitygw_bin.is_file():
            raise RuntimeError(f"{self.config.versitygw_bin} missing (run local/bootstrap.sh)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config.conf_dir.mkdir(parents=True, exist_ok=True)
        self.filter_file.write_text(json.dumps(S3_EVENT_FILTER, indent=2) + "\n")

    def command(self) -> list[str]:
        c = self.config
        return [
            str(c.versitygw_bin),
            "--port",
            f"127.0.0.1:{c.s3_port}",
            "--access",
            S3_ACCESS_KEY,
            "--secret",
            S3_SECRET_KEY,
            "--region",
            REGION,
            "--health",
            "/health",
            "--quiet",
            # versitygw sends an s3:TestEvent at start and exits if Kafka is unreachable.
            "--event-kafka-url",
            c.kafka_bootstrap,
            "--event-kafka-topic",
            S3_EVENTS_TOPIC,
            "--event-filter",
            str(self.filter_file),
            "posix",
            str(self.data_dir),
        ]

    def is_ready(self) -> bool:
        return http_ok(f"{self.config.s3_endpoint}/health")

    def client(self) -> object:
        import boto3  # slow import; only needed here
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.config.s3_endpoint,
            region_name=REGION,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def setup(self) -> str:
        from botocore.exceptions import ClientError

        s3 = self.client()
        try:
            s3.head_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
            return f"bucket {BUCKET} exists"
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise
        try:
            s3.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise
        return f"bucket {BUCKET} created"


class Postgres(Component):
    """Debian's PostgreSQL 15 binaries; a cluster of our own under the state dir."""

    name = "postgres"
    start_timeout = 60.0
    stop_timeout = 30.0

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir / "postgres"

    @property
    def socket_dir(self) -> Path:
        return self.config.run_dir / "postgres"

    def _as_postgres(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv],
            capture_output=True,
            text=True,
            env=child_env(),
            cwd="/",
            check=False,
        )

    def prepare(self) -> None:
        if not (PG_BIN / "postgres").is_file():
            raise RuntimeError(f"{PG_BIN}/postgres missing (run local/bootstrap.sh)")
        for path in (self.data_dir, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            shutil.chown(path, "postgres", "postgres")
        if self._as_postgres("test", "-w", str(self.data_dir)).returncode != 0:
            raise RuntimeError(
                f"user postgres cannot reach {self.data_dir}: every parent folder of the "
                "state dir needs o+x (e.g. chmod 755)"
            )
        self._remove_stale_locks()
        if (self.data_dir / "PG_VERSION").is_file():
            return
        # initdb refuses to run as root. trust auth: local, loopback-only dev server.
        out = self._as_postgres(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data_dir),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        )
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{out.stdout}{out.stderr}")

    def _remove_stale_locks(self) -> None:
        # After a hard kill the postmaster can stay a zombie that PID 1 never reaps; postgres
        # sees its pid "alive" and refuses to start, so drop locks whose owner is gone.
        for lock in [self.data_dir / "postmaster.pid", *self.socket_dir.glob(".s.PGSQL.*.lock")]:
            try:
                pid = int(lock.read_text().splitlines()[0])
            except (OSError, IndexError, ValueError):
                continue
            stat = proc_stat(pid)
            if stat is None or stat.state in ("Z", "X"):
                lock.unlink(missing_ok=True)

    def command(self) -> list[str]:
        c = self.config
        return [
            str(PG_BIN / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(c.postgres_port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.socket_dir}",
            "-c",
            "logging_collector=off",
        ]

    def user(self) -> str:
        return "postgres"

    def cwd(self) -> Path:
        return self.data_dir

    def _connect_kwargs(self, dbname: str) -> dict[str, object]:
        return {
            "host": "127.0.0.1",
            "port": self.config.postgres_port,
            "user": "postgres",
            "dbname": dbname,
            "connect_timeout": 2,
        }

    def is_ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(**self._connect_kwargs("postgres")) as conn:  # type: ignore[arg-type]
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def setup(self) -> str:
        import psycopg
        from psycopg import sql

        kwargs = self._connect_kwargs("postgres")
        with psycopg.connect(**kwargs, autocommit=True) as conn:  # type: ignore[arg-type]
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if row.fetchone() is not None:
                return f"database {DATABASE} exists"
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        return f"database {DATABASE} created"

    def stop(self) -> bool:
        running = self.is_running()
        if running:
            # Fast shutdown: roll back open sessions instead of waiting for clients to leave.
            # pg_ctl waits for postmaster.pid to go, so a <defunct> postmaster is not awaited.
            self._as_postgres(
                str(PG_BIN / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"
            )
        # Clears the PID file; SIGINT (= fast shutdown) only if pg_ctl did not manage.
        stopped = self.supervisor.stop(self.name, timeout=self.stop_timeout, sig=signal.SIGINT)
        return running or stopped


def prometheus_rule_files() -> list[Path]:
    rules_dir = repo_root() / "helm" / "clickstream" / "files" / "prometheus"
    return sorted(rules_dir.glob("*.rules.yaml")) if rules_dir.is_dir() else []


class Prometheus(Component):
    """Debian's Prometheus 2.x, scraping itself and the three services every 2 s."""

    name = "prometheus"
    start_timeout = 60.0

    @property
    def config_file(self) -> Path:
        return self.config.conf_dir / "prometheus.yml"

    def render_config(self) -> str:
        c = self.config
        jobs = [
            ("prometheus", c.prometheus_port),
            ("ingest-api", c.ingest_port),
            ("stream-processor", c.processor_metrics_port),
            ("warehouse-loader", c.loader_metrics_port),
            ("anomaly-detector", c.anomaly_metrics_port),
            ("recommender", c.recommender_port),
            ("alertmanager", c.alertmanager_port),
            ("correction", c.correction_metrics_port),
        ]
        lines = [
            "# Written by clickstream_local; regenerated on every start.",
            "global:",
            "  scrape_interval: 2s",
            "  evaluation_interval: 2s",
        ]
        lines += [
            "alerting:",
            "  alertmanagers:",
            "    - static_configs:",
            f'        - targets: ["127.0.0.1:{c.alertmanager_port}"]',
        ]
        rules = prometheus_rule_files()
        if rules:
            lines.append("rule_files:")
            lines += [f"  - {json.dumps(str(p))}" for p in rules]
        lines.append("scrape_configs:")
        for job, port in jobs:
            lines += [
                f"  - job_name: {json.dumps(job)}",
                "    static_configs:",
                f'      - targets: ["127.0.0.1:{port}"]',
            ]
        # The batch jobs' pushes keep their own job label (clickstream_local.orchestration).
        lines += [
            '  - job_name: "pushgateway"',
            "    honor_labels: true",
            "    static_configs:",
            f'      - targets: ["127.0.0.1:{c.pushgateway_port}"]',
        ]
        return "\n".join(lines) + "\n"

    def prepare(self) -> None:
        if not PROMETHEUS_BIN.is_file():
            raise RuntimeError(f"{PROMETHEUS_BIN} missing (run local/bootstrap.sh)")
        self.config.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.config.data_dir / "prometheus").mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.render_config())

    def command(self) -> list[str]:
        c = self.config
        return [
            str(PROMETHEUS_BIN),
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={c.data_dir / 'prometheus'}",
            f"--web.listen-address=127.0.0.1:{c.prometheus_port}",
            "--storage.tsdb.retention.time=7d",
            # Lets a developer reload edited rules with POST /-/reload.
            "--web.enable-lifecycle",
        ]

    def is_ready(self) -> bool:
        return http_ok(f"{self.config.prometheus_url}/-/ready")
