"""The whole local stack: start in dependency order, stop in reverse, report status."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from clickstream_common.settings import S3Settings
from clickstream_local.alerting import Alertmanager, Redis
from clickstream_local.aws_parts import KinesisLocal, Moto, Trino
from clickstream_local.components import S3, Component, Kafka, Postgres, Prometheus
from clickstream_local.config import (
    BUCKET,
    DEV_WRITE_KEY,
    REGION,
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    StackConfig,
)
from clickstream_local.correction import CORRECTION, CorrectionLoop
from clickstream_local.orchestration import PUSHGATEWAY, Pushgateway
from clickstream_local.services import SERVICE_MODULES, Service
from clickstream_local.supervisor import ReadinessError, Supervisor

# Start order. Slow parts come first so they boot while the next ones are set up; s3 comes
# after kafka is ready because versitygw exits when it cannot send its test event.
PLATFORM = ("kafka", "postgres", "prometheus", "s3", "redis", "alertmanager", PUSHGATEWAY)


def platform_of(config: StackConfig) -> tuple[str, ...]:
    """The parts `make up` starts: Kinesis too when it is the bus (docs/aws.md)."""
    return PLATFORM + (("kinesis",) if config.bus == "kinesis" else ())


# The late-data correction pass runs beside the services (clickstream_local.correction).
SERVICES = (*SERVICE_MODULES, CORRECTION)


@dataclass(frozen=True)
class ConnectionInfo:
    ingest_url: str
    write_key: str
    warehouse_dsn: str
    prometheus_url: str
    s3_endpoint: str
    s3_bucket: str
    s3_region: str
    s3_access_key: str
    s3_secret_key: str
    kafka_bootstrap: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def s3_settings(self) -> S3Settings:
        """The stack's S3 server as the services see it."""
        return S3Settings(
            s3_endpoint_url=self.s3_endpoint,
            s3_region=self.s3_region,
            s3_bucket=self.s3_bucket,
            aws_access_key_id=self.s3_access_key,
            aws_secret_access_key=SecretStr(self.s3_secret_key),
        )

    def s3_client(self) -> Any:
        """A boto3 client of the stack's S3 server (tests, benchmarks, the demo)."""
        return self.s3_settings().s3_client()


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    ready: bool


class Stack:
    def __init__(self, config: StackConfig, progress: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.supervisor = Supervisor(config.state_dir)
        self._progress = progress
        self._t0 = time.monotonic()
        parts: list[Component] = [
            Kafka(config, self.supervisor),
            Postgres(config, self.supervisor),
            Prometheus(config, self.supervisor),
            S3(config, self.supervisor),
            Pushgateway(config, self.supervisor),
            Redis(config, self.supervisor),
            Alertmanager(config, self.supervisor),
            # Optional parts, started by whoever needs them (docs/aws.md).
            KinesisLocal(config, self.supervisor),
            Moto(config, self.supervisor),
            Trino(config, self.supervisor),
        ]
        parts += [Service(name, config, self.supervisor) for name in SERVICE_MODULES]
        parts.append(CorrectionLoop(config, self.supervisor))
        self.components: dict[str, Component] = {c.name: c for c in parts}

    def _say(self, message: str) -> None:
        if self._progress is not None:
            self._progress(f"[{time.monotonic() - self._t0:5.1f}s] {message}")

    def start(self, platform: bool = True, services: bool = False) -> None:
        """Start the selected parts (idempotent: running parts are only checked)."""
        self._t0 = time.monotonic()
        names = (platform_of(self.config) if platform else ()) + (SERVICES if services else ())
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        self.config.save()
        ready: set[str] = set()

        def ensure_ready(part: Component) -> None:
            if part.name in ready:
                return
            if not part.is_running():
                if part.name in names:  # launched by this call, and died since
                    raise ReadinessError(f"{part.name}: {self.supervisor.exit_reason(part.name)}")
                raise RuntimeError(f"{part.name} is not running (start the platform first)")
            part.wait_ready()
            note = part.setup()
            ready.add(part.name)
            self._say(f"{part.name}: ready" + (f" ({note})" if note else ""))

        for name in names:
            part = self.components[name]
            for dep in part.needs:
                ensure_ready(self.components[dep])
            if part.launch():
                self._say(f"{name}: started (pid {part.pid()})")
            else:
                self._say(f"{name}: already running (pid {part.pid()})")
        for name in names:
            ensure_ready(self.components[name])

    def stop(self) -> None:
        """Stop every part that runs, services first, in reverse start order."""
        self._t0 = time.monotonic()
        for name in reversed(list(self.components)):
            if self.components[name].stop():
                self._say(f"{name}: stopped")
        self.config.saved_path.unlink(missing_ok=True)

    def status(self) -> list[ComponentStatus]:
        result = []
        for name in platform_of(self.config) + SERVICES:
            part = self.components[name]
            pid = part.pid()
            result.append(ComponentStatus(name, pid, pid is not None and part.is_ready()))
        return result

    def connection_info(self) -> ConnectionInfo:
        c = self.config
        return ConnectionInfo(
            ingest_url=c.ingest_url,
            write_key=DEV_WRITE_KEY,
            warehouse_dsn=c.warehouse_dsn,
            prometheus_url=c.prometheus_url,
            s3_endpoint=c.s3_endpoint,
            s3_bucket=BUCKET,
            s3_region=REGION,
            s3_access_key=S3_ACCESS_KEY,
            s3_secret_key=S3_SECRET_KEY,
            kafka_bootstrap=c.kafka_bootstrap,
        )

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
