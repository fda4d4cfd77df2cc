"""Config, service environments and generated configs (no processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clickstream_local.components import Prometheus
from clickstream_local.config import _PORT_FIELDS, TOPIC_PARTITIONS, StackConfig, read_versions
from clickstream_local.services import SERVICE_MODULES, service_env
from clickstream_local.stack import Stack
from clickstream_local.supervisor import Supervisor


def test_defaults_match_contracts(tmp_path: Path) -> None:
    c = StackConfig.default(tmp_path)
    assert (c.kafka_port, c.kafka_controller_port, c.s3_port, c.postgres_port) == (
        19092,
        19093,
        17070,
        15432,
    )
    assert (c.prometheus_port, c.ingest_port) == (19090, 18080)
    assert (c.processor_metrics_port, c.loader_metrics_port) == (18091, 18092)
    assert c.correction_metrics_port == 18096
    assert TOPIC_PARTITIONS == {
        "clickstream.events": 6,
        "clickstream.events.dlq": 3,
        "clickstream.s3-events": 3,
        "clickstream.anomalies": 1,
    }
    assert (c.redis_port, c.alertmanager_port) == (16379, 19095)
    assert (c.anomaly_metrics_port, c.recommender_port) == (18093, 18094)


def test_ephemeral_ports_are_distinct_and_saved(tmp_path: Path) -> None:
    c = StackConfig.ephemeral(tmp_path, cache_dir=tmp_path / "c", bin_dir=tmp_path / "b")
    ports = [v for k, v in c.to_dict().items() if k.endswith("_port")]
    # Every part's port is chosen, and no two parts share one.
    assert len(ports) == len(_PORT_FIELDS) and len(set(ports)) == len(ports)
    assert 19092 not in ports
    c.save()
    assert StackConfig.load(tmp_path) == c


def test_scratch_stacks_live_under_the_state_dir_and_share_downloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLICKSTREAM_STATE_DIR", str(tmp_path))
    c = StackConfig.scratch("bench-stacks", "x1", kafka_heap="2g")
    assert c.state_dir == tmp_path / "bench-stacks" / "x1"
    assert (c.cache_dir, c.bin_dir) == (tmp_path / "cache", tmp_path / "bin")
    assert c.kafka_heap == "2g" and c.kafka_port != 19092


def test_service_env(tmp_path: Path) -> None:
    c = StackConfig.ephemeral(tmp_path)
    ingest = service_env(c, "ingest-api")
    assert ingest["KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{c.kafka_port}"
    assert ingest["INGEST_PORT"] == str(c.ingest_port)
    assert json.loads(ingest["INGEST_WRITE_KEYS"]) == {"dev-write-key": "dev"}
    proc = service_env(c, "stream-processor")
    assert proc["PROCESSOR_CHECKPOINT_LOCATION"].endswith("data/checkpoints/stream-processor")
    assert proc["S3_ENDPOINT_URL"] == f"http://127.0.0.1:{c.s3_port}"
    loader = service_env(c, "warehouse-loader")
    assert (
        loader["WAREHOUSE_DSN"] == f"postgresql://postgres@127.0.0.1:{c.postgres_port}/clickstream"
    )
    assert loader["LOADER_NOTIFICATIONS_TOPIC"] == "clickstream.s3-events"
    assert set(SERVICE_MODULES) == {
        "ingest-api",
        "stream-processor",
        "warehouse-loader",
        "anomaly-detector",
        "recommender",
    }


def test_prometheus_config_scrapes_services(tmp_path: Path) -> None:
    c = StackConfig.ephemeral(tmp_path)
    text = Prometheus(c, Supervisor(tmp_path)).render_config()
    assert "scrape_interval: 2s" in text
    for job, port in [
        ("ingest-api", c.ingest_port),
        ("stream-processor", c.processor_metrics_port),
        ("warehouse-loader", c.loader_metrics_port),
        ("correction", c.correction_metrics_port),
    ]:
        assert f'job_name: "{job}"' in text
        assert f"127.0.0.1:{port}" in text


def test_versions_file_pins() -> None:
    v = read_versions()
    assert v["PYSPARK_VERSION"] == v["SPARK_KAFKA_VERSION"]
    for key in ("KAFKA_VERSION", "LOG4J_VERSION", "VERSITYGW_VERSION", "HADOOP_AWS_VERSION"):
        assert v[key]


def test_status_of_nothing(tmp_path: Path) -> None:
    stack = Stack(StackConfig.ephemeral(tmp_path))
    assert all(s.pid is None and not s.ready for s in stack.status())
    stack.stop()  # nothing to stop: no error


def test_the_kinesis_bus_reaches_the_collector_and_the_processor(tmp_path: Path) -> None:
    from clickstream_local.services import service_env

    c = StackConfig.ephemeral(tmp_path, cache_dir=tmp_path / "c", bin_dir=tmp_path / "b")
    assert "INGEST_SINK" not in service_env(c, "ingest-api")  # Kafka: the services' default
    k = StackConfig.ephemeral(
        tmp_path, cache_dir=tmp_path / "c", bin_dir=tmp_path / "b", bus="kinesis"
    )
    ingest, processor = service_env(k, "ingest-api"), service_env(k, "stream-processor")
    assert ingest["INGEST_SINK"] == "kinesis" and processor["PROCESSOR_SOURCE"] == "kinesis"
    for env in (ingest, processor):
        assert env["KINESIS_ENDPOINT_URL"] == f"http://127.0.0.1:{k.kinesis_port}"
    assert processor["PROCESSOR_CHECKPOINT_LOCATION"].endswith("stream-processor-kinesis")
    assert (
        service_env(c, "stream-processor")["PROCESSOR_CHECKPOINT_LOCATION"]
        != (processor["PROCESSOR_CHECKPOINT_LOCATION"])
    )
    assert "INGEST_SINK" not in service_env(k, "warehouse-loader")


@pytest.mark.parametrize("bus", ["kafka", "kinesis"])
def test_every_variable_the_local_platform_sets_is_a_setting(tmp_path: Path, bus: str) -> None:
    """The local platform's service environment names only Settings fields (docs/contracts.md
    is generated from them): the service's own, or the shared S3 and Kinesis settings every
    service is handed (the collector's Kinesis publisher reads KinesisSettings), besides
    Spark's own variables."""
    import importlib

    from clickstream_common.settings import KinesisSettings, S3Settings

    shared = {f.upper() for cls in (S3Settings, KinesisSettings) for f in cls.model_fields}
    spark_own = {"SPARK_LOCAL_IP", "PYSPARK_PYTHON"}
    c = StackConfig.ephemeral(tmp_path, cache_dir=tmp_path / "c", bin_dir=tmp_path / "b", bus=bus)
    for name, module in SERVICE_MODULES.items():
        settings = importlib.import_module(f"{module}.config").Settings
        fields = {f.upper() for f in settings.model_fields}
        unknown = set(service_env(c, name)) - fields - shared - spark_own
        assert not unknown, f"{name}: {sorted(unknown)} are no Settings fields"


def test_connection_info_makes_the_services_s3_client() -> None:
    from clickstream_local.stack import ConnectionInfo

    info = ConnectionInfo(
        "http://i", "k", "dsn", "http://p", "http://127.0.0.1:17070", "lake", "eu-west-1",
        "access", "secret", "127.0.0.1:19092",
    )  # fmt: skip
    client = info.s3_client()
    assert client.meta.endpoint_url == "http://127.0.0.1:17070"
    assert client.meta.region_name == "eu-west-1"
    assert client._request_signer._credentials.access_key == "access"
    assert info.s3_settings().s3_bucket == "lake"
