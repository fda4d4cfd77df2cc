"""Optional parts of the local platform for the AWS path (docs/aws.md):

* `kinesis`: kinesis-local (kinesis-mock for Node), the events stream when BUS=kinesis.
* `moto`: a local endpoint of the AWS APIs that have no open-source twin here (Glue, SQS).
* `trino`: Trino 476, the engine behind Athena, reading the lake through the Glue tables
  registered in `moto` (catalog `awsdatacatalog`, as Athena names the Glue catalog).

Neither runs by default; the tests that need them start them next to a stack.
"""

from __future__ import annotations

import sys
from pathlib import Path

from clickstream_local.components import Component, child_env, http_ok
from clickstream_local.config import (
    REGION,
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    StackConfig,
    read_versions,
)

# moto accepts any key; these only make the requests well-formed.
MOTO_ACCESS_KEY = "moto"
MOTO_SECRET_KEY = "moto-secret"  # noqa: S105 - a local mock's placeholder
TRINO_CATALOG = "awsdatacatalog"
KINESIS_STREAM = "clickstream-events"
KINESIS_DEAD_LETTER_STREAM = "clickstream-events-dlq"
# Streams created at start, with their shard counts. Two shards, not the Kafka topic's six:
# kinesis-mock serves each shard's reads slowly, and the processor polls every shard of every
# query each trigger (local[2] reads two partitions at a time anyway).
KINESIS_STREAMS = {KINESIS_STREAM: 2, KINESIS_DEAD_LETTER_STREAM: 1}


class KinesisLocal(Component):
    """kinesis-local, started from its own package folder (it reads server.json from there),
    persisting its streams under the state dir so a restart keeps what the checkpoints name."""

    name = "kinesis"
    start_timeout = 60.0

    @property
    def package_dir(self) -> Path:
        version = read_versions()["KINESIS_LOCAL_VERSION"]
        return self.config.cache_dir / f"kinesis-local-{version}" / "node_modules" / "kinesis-local"

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir / "kinesis"

    def prepare(self) -> None:
        if not (self.package_dir / "main.js").is_file():
            raise RuntimeError(f"{self.package_dir} missing (run local/bootstrap.sh)")
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return ["node", "main.js"]

    def cwd(self) -> Path:
        return self.package_dir

    def env(self) -> dict[str, str]:
        c = self.config
        return child_env(
            {
                "KINESIS_MOCK_PLAIN_PORT": str(c.kinesis_port),
                # The TLS listener cannot be turned off: give it a port of its own too.
                "KINESIS_MOCK_TLS_PORT": str(c.kinesis_tls_port),
                "INITIALIZE_STREAMS": ",".join(f"{n}:{k}" for n, k in KINESIS_STREAMS.items()),
                "AWS_REGION": REGION,
                "SHOULD_PERSIST_DATA": "true",
                "PERSIST_PATH": str(self.data_dir),
                # It rewrites the whole store each time: seconds apart, not every second.
                "PERSIST_INTERVAL": "10s",
                "LOG_LEVEL": "WARN",
            }
        )

    def client(self) -> object:
        import boto3

        return boto3.client(
            "kinesis",
            endpoint_url=self.config.kinesis_endpoint,
            region_name=REGION,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
        )

    def is_ready(self) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            kinesis = self.client()
            for stream in KINESIS_STREAMS:
                summary = kinesis.describe_stream_summary(StreamName=stream)  # type: ignore[attr-defined]
                if summary["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
                    return False
        except (BotoCoreError, ClientError):
            return False
        return True

    def setup(self) -> str:
        return "streams: " + ", ".join(f"{n} ({k} shards)" for n, k in KINESIS_STREAMS.items())


class Moto(Component):
    """moto's server mode: Glue, SQS, SNS, ... on one port (state in memory)."""

    name = "moto"
    start_timeout = 60.0

    def command(self) -> list[str]:
        moto_server = Path(sys.executable).parent / "moto_server"
        return [str(moto_server), "-H", "127.0.0.1", "-p", str(self.config.moto_port)]

    def is_ready(self) -> bool:
        return http_ok(f"{self.config.moto_endpoint}/moto-api/")


def java_at_least(major: int, jvm_dir: Path = Path("/usr/lib/jvm")) -> Path:
    """JAVA_HOME of an installed JDK whose major version is `major` or newer."""
    for release in sorted(jvm_dir.glob("*/release")):
        for line in release.read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                version = line.split("=", 1)[1].strip('"')
                if int(version.split(".")[0]) >= major and (release.parent / "bin/java").is_file():
                    return release.parent
    raise RuntimeError(f"no JDK {major}+ under {jvm_dir} (Trino needs it; see docs/aws.md)")


class Trino(Component):
    """A single-node Trino (coordinator and worker) with the Hive connector on Glue + S3."""

    name = "trino"
    needs = ("moto", "s3")
    start_timeout = 120.0
    stop_timeout = 30.0

    @property
    def home(self) -> Path:
        version = read_versions()["TRINO_VERSION"]
        return self.config.cache_dir / f"trino-{version}"

    @property
    def etc_dir(self) -> Path:
        return self.config.conf_dir / "trino"

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir / "trino"

    def files(self) -> dict[str, str]:
        c = self.config
        return {
            "config.properties": "\n".join(
                [
                    "coordinator=true",
                    "node-scheduler.include-coordinator=true",
                    f"http-server.http.port={c.trino_port}",
                    f"discovery.uri=http://127.0.0.1:{c.trino_port}",
                    "query.max-memory=512MB",
                    "query.max-memory-per-node=512MB",
                ]
            ),
            "log.properties": "io.trino=INFO",
            f"catalog/{TRINO_CATALOG}.properties": "\n".join(
                [
                    "connector.name=hive",
                    "hive.metastore=glue",
                    f"hive.metastore.glue.region={REGION}",
                    f"hive.metastore.glue.endpoint-url={c.moto_endpoint}",
                    f"hive.metastore.glue.aws-access-key={MOTO_ACCESS_KEY}",
                    f"hive.metastore.glue.aws-secret-key={MOTO_SECRET_KEY}",
                    "fs.native-s3.enabled=true",
                    f"s3.endpoint={c.s3_endpoint}",
                    f"s3.region={REGION}",
                    "s3.path-style-access=true",
                    f"s3.aws-access-key={S3_ACCESS_KEY}",
                    f"s3.aws-secret-key={S3_SECRET_KEY}",
                ]
            ),
        }

    def prepare(self) -> None:
        if not (self.home / "lib").is_dir() or not (self.home / "plugin" / "hive").is_dir():
            raise RuntimeError(f"{self.home} missing (run local/bootstrap.sh)")
        for name, text in self.files().items():
            path = self.etc_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("# Written by clickstream_local; regenerated on every start.\n" + text)
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        java = java_at_least(24) / "bin" / "java"
        etc = self.etc_dir
        return [
            str(java),
            "-Xmx1G",
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
            "-XX:+EnableDynamicAgentLoading",
            "-Djdk.attach.allowAttachSelf=true",
            # The lake's timestamps are UTC; so are the answers.
            "-Duser.timezone=UTC",
            "-Dnode.environment=clickstream",
            "-Dnode.id=local",
            # Without it the node announces its first interface and calls itself there.
            "-Dnode.internal-address=127.0.0.1",
            f"-Dnode.data-dir={self.data_dir}",
            f"-Dconfig={etc / 'config.properties'}",
            f"-Dlog.levels-file={etc / 'log.properties'}",
            f"-Dcatalog.config-dir={etc / 'catalog'}",
            f"-Dplugin.dir={self.home / 'plugin'}",
            "-cp",
            f"{self.home / 'lib'}/*",
            "io.trino.server.TrinoServer",
        ]

    def env(self) -> dict[str, str]:
        return child_env({"JAVA_HOME": str(java_at_least(24))})

    def is_ready(self) -> bool:
        import httpx

        try:
            info = httpx.get(f"{self.config.trino_url}/v1/info", timeout=1.0).json()
        except (httpx.HTTPError, ValueError):
            return False
        return info.get("starting") is False


# The collector's and the processor's bus settings (INGEST_SINK, PROCESSOR_SOURCE).
_BUS_SETTING = {"ingest-api": "INGEST_SINK", "stream-processor": "PROCESSOR_SOURCE"}


def bus_needs(config: StackConfig, service: str) -> tuple[str, ...]:
    return ("kinesis",) if config.bus == "kinesis" and service in _BUS_SETTING else ()


def bus_env(config: StackConfig, service: str) -> dict[str, str]:
    """The bus settings of a service: nothing for Kafka (the default), the stream for Kinesis."""
    if config.bus != "kinesis" or service not in _BUS_SETTING:
        return {}
    env = {}
    if service == "stream-processor":
        # Checkpoints name their source: a state dir that ran on Kafka keeps those apart.
        checkpoints = config.data_dir / "checkpoints" / "stream-processor-kinesis"
        env["PROCESSOR_CHECKPOINT_LOCATION"] = str(checkpoints)
    return env | {
        _BUS_SETTING[service]: "kinesis",
        "KINESIS_STREAM_NAME": KINESIS_STREAM,
        "KINESIS_DEAD_LETTER_STREAM_NAME": KINESIS_DEAD_LETTER_STREAM,
        "KINESIS_REGION": REGION,
        "KINESIS_ENDPOINT_URL": config.kinesis_endpoint,
    }
