"""Where the local platform keeps its state and which ports its parts listen on."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clickstream_common.settings import (
    ANOMALIES_TOPIC,
    DEAD_LETTER_TOPIC,
    EVENTS_TOPIC,
    LAKE_BUCKET,
    S3_EVENTS_TOPIC,
)

__all__ = ["ANOMALIES_TOPIC", "BUCKET", "DEAD_LETTER_TOPIC", "EVENTS_TOPIC", "S3_EVENTS_TOPIC"]

TOPIC_PARTITIONS: dict[str, int] = {
    EVENTS_TOPIC: 6,
    DEAD_LETTER_TOPIC: 3,
    S3_EVENTS_TOPIC: 3,
    ANOMALIES_TOPIC: 1,
}
RECOMMENDER_READ_KEY = "dev-read-key"
BUCKET = LAKE_BUCKET
DATABASE = "clickstream"
REGION = "us-east-1"
# Development-only credentials: the versitygw root user and the ingest write key.
S3_ACCESS_KEY = "clickstream-dev"
S3_SECRET_KEY = "clickstream-dev-secret"  # noqa: S105 - a local dev value, documented
DEV_WRITE_KEY = "dev-write-key"
DEV_SOURCE = "dev"

_PORT_FIELDS = (
    "kafka_port",
    "kafka_controller_port",
    "s3_port",
    "postgres_port",
    "prometheus_port",
    "ingest_port",
    "processor_metrics_port",
    "loader_metrics_port",
    "redis_port",
    "alertmanager_port",
    "anomaly_metrics_port",
    "recommender_port",
    "kafka_secure_port",
    "kinesis_port",
    "kinesis_tls_port",
    "moto_port",
    "trino_port",
    "correction_metrics_port",
    "pushgateway_port",
)


def repo_root() -> Path:
    """The checkout this package lives in (editable install), else $CLICKSTREAM_REPO_ROOT/cwd."""
    here = Path(__file__).resolve().parents[3]
    if (here / "local" / "versions.env").is_file():
        return here
    return Path(os.environ.get("CLICKSTREAM_REPO_ROOT", os.getcwd())).resolve()


def default_state_dir() -> Path:
    return Path(os.environ.get("CLICKSTREAM_STATE_DIR", repo_root() / ".state")).resolve()


def read_versions(path: Path | None = None) -> dict[str, str]:
    """local/versions.env as a dict (KEY=VALUE lines; comments and blanks skipped)."""
    versions: dict[str, str] = {}
    text = (path or repo_root() / "local" / "versions.env").read_text()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip().strip("\"'")
    return versions


@dataclass(frozen=True)
class StackConfig:
    """State root, download caches and one port per part (defaults: docs/contracts.md)."""

    state_dir: Path
    # Filled by local/bootstrap.sh; tests point these at the main checkout's caches.
    cache_dir: Path
    bin_dir: Path
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    s3_port: int = 17070
    postgres_port: int = 15432
    prometheus_port: int = 19090
    ingest_port: int = 18080
    processor_metrics_port: int = 18091
    loader_metrics_port: int = 18092
    redis_port: int = 16379
    alertmanager_port: int = 19095
    anomaly_metrics_port: int = 18093
    recommender_port: int = 18094
    # Where Alertmanager delivers (clickstream_local.alerting.AlertTargets fields).
    alert_targets: dict[str, str] = dataclasses.field(default_factory=dict)
    # The broker's TLS + SASL/SCRAM listener (kafka_tls.py), used by the services when
    # kafka_security is "SASL_SSL"; with "PLAINTEXT" (the default) it is not opened.
    kafka_secure_port: int = 19094
    kafka_security: str = "PLAINTEXT"
    # The AWS path (docs/aws.md): kinesis-local (BUS=kinesis), moto (Glue, SQS) and Trino.
    kinesis_port: int = 14568
    kinesis_tls_port: int = 14567
    moto_port: int = 15050
    trino_port: int = 18095
    # The bus between the collector and the processor: "kafka" or "kinesis". Kafka runs in
    # both cases (versitygw sends the lake's notifications to it).
    bus: str = "kafka"
    correction_metrics_port: int = 18096
    # What the batch jobs (orchestration/) push for Prometheus (clickstream_local.orchestration).
    pushgateway_port: int = 19091
    # Kafka's own start script default (-Xmx1G -Xms1G): with 512m, or a heap that starts
    # small, G1 ran concurrent cycles back to back under load and the produce latency tail grew.
    kafka_heap: str = "1g"
    # Per-service environment overrides, e.g. {"stream-processor": {"PROCESSOR_...": "..."}};
    # tests use them to run a service with settings of their own.
    service_env: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    @classmethod
    def default(cls, state_dir: Path | None = None, **overrides: Any) -> StackConfig:
        state = (state_dir or default_state_dir()).resolve()
        cache = Path(os.environ.get("CLICKSTREAM_CACHE_DIR", state / "cache"))
        bin_dir = Path(os.environ.get("CLICKSTREAM_BIN_DIR", state / "bin"))
        fields: dict[str, Any] = {"cache_dir": cache.resolve(), "bin_dir": bin_dir.resolve()}
        fields.update(overrides)
        return cls(state_dir=state, **fields)

    @classmethod
    def ephemeral(cls, state_dir: Path, **overrides: Any) -> StackConfig:
        """Free ports chosen by the kernel, so tests can run beside a running `make up`."""
        ports = free_ports(len(_PORT_FIELDS))
        fields: dict[str, Any] = dict(zip(_PORT_FIELDS, ports, strict=True))
        fields.update(overrides)
        return cls.default(state_dir, **fields)

    @classmethod
    def scratch(cls, area: str, name: str, **overrides: Any) -> StackConfig:
        """A stack of its own (tests, benchmarks) on free ports, under the project's state
        dir in `area/name`: PostgreSQL, run as `postgres`, must reach its data dir. Downloads
        and binaries are shared with the main stack."""
        main_state = default_state_dir()
        return cls.ephemeral(
            main_state / area / name,
            cache_dir=main_state / "cache",
            bin_dir=main_state / "bin",
            **overrides,
        )

    # Derived locations.
    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def conf_dir(self) -> Path:
        return self.state_dir / "conf"

    @property
    def kafka_libs_dir(self) -> Path:
        return self.cache_dir / "kafka-libs"

    @property
    def kafka_secure(self) -> bool:
        return self.kafka_security == "SASL_SSL"

    @property
    def spark_jars_dir(self) -> Path:
        return self.cache_dir / "spark-jars"

    @property
    def versitygw_bin(self) -> Path:
        return self.bin_dir / "versitygw"

    # Addresses.
    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def warehouse_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.postgres_port}/{DATABASE}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def kinesis_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.kinesis_port}"

    @property
    def moto_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def trino_url(self) -> str:
        return f"http://127.0.0.1:{self.trino_port}"

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ingest_port}"

    def spark_jars(self) -> list[Path]:
        return sorted(self.spark_jars_dir.glob("*.jar"))

    # The CLI saves the config of a running stack so `status`/`down` find its ports.
    @property
    def saved_path(self) -> Path:
        return self.run_dir / "stack.json"

    def save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data = {k: str(v) if isinstance(v, Path) else v for k, v in self.to_dict().items()}
        self.saved_path.write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> StackConfig | None:
        path = state_dir.resolve() / "run" / "stack.json"
        if not path.is_file():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        for key in ("state_dir", "cache_dir", "bin_dir"):
            data[key] = Path(data[key])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 right now (all sockets held until all chosen)."""
    with ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports
