"""The three pipeline services as supervised processes, configured per docs/contracts.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from clickstream_local.aws_parts import bus_env, bus_needs
from clickstream_local.components import Component, child_env, http_ok
from clickstream_local.config import (
    BUCKET,
    DEAD_LETTER_TOPIC,
    DEV_SOURCE,
    DEV_WRITE_KEY,
    EVENTS_TOPIC,
    RECOMMENDER_READ_KEY,
    REGION,
    S3_ACCESS_KEY,
    S3_EVENTS_TOPIC,
    S3_SECRET_KEY,
    StackConfig,
    repo_root,
)
from clickstream_local.kafka_tls import SecureListener
from clickstream_local.supervisor import Supervisor

SERVICE_MODULES: dict[str, str] = {
    "ingest-api": "ingest_api",
    "stream-processor": "stream_processor",
    "warehouse-loader": "warehouse_loader",
    "anomaly-detector": "anomaly_detector",
    "recommender": "recommender",
}
_NEEDS: dict[str, tuple[str, ...]] = {
    "ingest-api": ("kafka",),
    "stream-processor": ("kafka", "s3"),
    "warehouse-loader": ("kafka", "s3", "postgres"),
    "anomaly-detector": ("kafka", "s3"),
    "recommender": ("kafka", "redis"),
}


def service_env(config: StackConfig, name: str) -> dict[str, str]:
    """The contract environment variables of service `name` for this stack (no inheritance)."""
    if name not in SERVICE_MODULES:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(SERVICE_MODULES)}")
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": config.kafka_bootstrap,
        "KAFKA_EVENTS_TOPIC": EVENTS_TOPIC,
        "KAFKA_DEAD_LETTER_TOPIC": DEAD_LETTER_TOPIC,
        "S3_ENDPOINT_URL": config.s3_endpoint,
        "S3_REGION": REGION,
        "S3_BUCKET": BUCKET,
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "LOG_LEVEL": "INFO",
    }
    if name == "ingest-api":
        env |= {
            "INGEST_HOST": "127.0.0.1",
            "INGEST_PORT": str(config.ingest_port),
            "INGEST_WRITE_KEYS": json.dumps({DEV_WRITE_KEY: DEV_SOURCE}),
        }
    elif name == "stream-processor":
        env |= {
            "PROCESSOR_SPARK_MASTER": "local[2]",
            "PROCESSOR_SPARK_JARS": ",".join(str(p) for p in config.spark_jars()),
            "PROCESSOR_CHECKPOINT_LOCATION": str(
                config.data_dir / "checkpoints" / "stream-processor"
            ),
            "PROCESSOR_METRICS_PORT": str(config.processor_metrics_port),
            # Spark otherwise binds its driver to the first non-loopback interface.
            "SPARK_LOCAL_IP": "127.0.0.1",
            # Python workers (the Kinesis source's reads) run this environment's Python.
            "PYSPARK_PYTHON": sys.executable,
        }
    elif name == "anomaly-detector":
        env |= {"ANOMALY_METRICS_PORT": str(config.anomaly_metrics_port)}
    elif name == "recommender":
        env |= {
            "RECOMMENDER_HOST": "127.0.0.1",
            "RECOMMENDER_PORT": str(config.recommender_port),
            "RECOMMENDER_REDIS_URL": f"redis://127.0.0.1:{config.redis_port}/0",
            "RECOMMENDER_READ_KEYS": json.dumps([RECOMMENDER_READ_KEY]),
        }
    else:
        env |= {
            "WAREHOUSE_DSN": config.warehouse_dsn,
            "LOADER_NOTIFICATIONS_TOPIC": S3_EVENTS_TOPIC,
            "LOADER_CONSUMER_GROUP": "warehouse-loader",
            "LOADER_METRICS_PORT": str(config.loader_metrics_port),
        }
    if config.kafka_secure:
        # Every service connects through the TLS + SCRAM listener only.
        env |= SecureListener(
            config.conf_dir / "kafka" / "tls", config.kafka_secure_port
        ).client_env()
    return env | bus_env(config, name) | config.service_env.get(name, {})


class Service(Component):
    """`python -m <module>` with the contract env; ready when its HTTP check answers 200."""

    def __init__(self, name: str, config: StackConfig, supervisor: Supervisor) -> None:
        super().__init__(config, supervisor)
        self.name = name
        self.needs = _NEEDS[name] + bus_needs(config, name)
        # A Spark session alone takes ~10 s on 2 cores, more while the platform is busy.
        self.start_timeout = 180.0 if name == "stream-processor" else 60.0

    @property
    def health_url(self) -> str:
        c = self.config
        return {
            "ingest-api": f"{c.ingest_url}/healthz",
            "stream-processor": f"http://127.0.0.1:{c.processor_metrics_port}/metrics",
            "warehouse-loader": f"http://127.0.0.1:{c.loader_metrics_port}/healthz",
            "anomaly-detector": f"http://127.0.0.1:{c.anomaly_metrics_port}/healthz",
            "recommender": f"http://127.0.0.1:{c.recommender_port}/healthz",
        }[self.name]

    def command(self) -> list[str]:
        return [sys.executable, "-m", SERVICE_MODULES[self.name]]

    def env(self) -> dict[str, str]:
        return child_env(service_env(self.config, self.name) | {"PYTHONUNBUFFERED": "1"})

    def cwd(self) -> Path:
        return repo_root()

    def prepare(self) -> None:
        if self.name == "stream-processor":
            if not self.config.spark_jars():
                raise RuntimeError(
                    f"no jars in {self.config.spark_jars_dir} (run local/bootstrap.sh)"
                )
            (self.config.data_dir / "checkpoints").mkdir(parents=True, exist_ok=True)

    def is_ready(self) -> bool:
        return http_ok(self.health_url)
