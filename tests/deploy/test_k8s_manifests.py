"""k8s/: the development cluster's dependencies only (Strimzi Kafka + topics, versitygw,
PostgreSQL, namespace), valid for Kubernetes and consistent with docs/contracts.md."""

from __future__ import annotations

import re
from typing import Any

import pytest
from deployhelpers import K8S_DIR, KUBE_VERSIONS, REPO, load_yaml_docs, require_module

MANIFESTS = sorted(
    p
    for p in K8S_DIR.glob("*.yaml")
    if p.name not in ("kustomization.yaml", "clickstream-dev-values.yaml")
)
STRIMZI = "kafka.strimzi.io/v1beta2"


def _docs() -> list[dict[str, Any]]:
    return [d for p in MANIFESTS for d in load_yaml_docs(p.read_text())]


def test_kustomization_lists_every_manifest(yaml_mod: Any) -> None:
    kustomization = yaml_mod.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_core_objects_validate(version: str) -> None:
    kv = require_module("kubernetes_validate", "kubernetes-validate")
    errors = []
    for doc in _docs():
        if doc["apiVersion"] == STRIMZI:
            continue
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_dependencies_only_no_copy_of_the_chart() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in _docs()}
    assert ("Namespace", "clickstream-dev") in kinds
    assert {k for k, _ in kinds} >= {
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "Deployment",
        "PersistentVolumeClaim",
        "StatefulSet",
        "Service",
    }
    for doc in _docs():
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") != "clickstream", doc["metadata"]["name"]
        assert not any(
            s in doc["metadata"]["name"]
            for s in ("ingest-api", "stream-processor", "warehouse-loader")
        )
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "clickstream-dev"


def test_kafka_is_kraft_with_node_pools() -> None:
    docs = _docs()
    [kafka] = [d for d in docs if d["kind"] == "Kafka"]
    [pool] = [d for d in docs if d["kind"] == "KafkaNodePool"]
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    assert "zookeeper" not in kafka["spec"]
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    assert "topicOperator" in kafka["spec"]["entityOperator"]
    [listener] = kafka["spec"]["kafka"]["listeners"]
    values = (K8S_DIR / "clickstream-dev-values.yaml").read_text()
    assert (
        f"{kafka['metadata']['name']}-kafka-bootstrap.clickstream-dev.svc:{listener['port']}"
        in values
    )


def test_topics_match_the_contract() -> None:
    text = (REPO / "docs" / "contracts.md").read_text()
    contract = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^\| `([a-z0-9.\-]+)` \| (\d+) \|", text, re.M)
    }
    assert len(contract) == 4
    topics = {
        d["metadata"]["name"]: d["spec"]["partitions"] for d in _docs() if d["kind"] == "KafkaTopic"
    }
    assert topics == contract
    [kafka] = [d for d in _docs() if d["kind"] == "Kafka"]
    for doc in _docs():
        if doc["kind"] == "KafkaTopic":
            assert doc["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]


def test_versitygw_sends_events_to_the_loader_topic() -> None:
    [gw] = [
        d for d in _docs() if d["kind"] == "Deployment" and d["metadata"]["name"] == "versitygw"
    ]
    env = {e["name"]: e for e in gw["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["VGW_EVENT_KAFKA_TOPIC"]["value"] == "clickstream.s3-events"
    assert env["ROOT_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "clickstream-s3"


def test_no_credentials_in_manifests() -> None:
    for path in [*MANIFESTS, K8S_DIR / "clickstream-dev-values.yaml"]:
        for doc in load_yaml_docs(path.read_text()):
            assert doc.get("kind") != "Secret", f"{path.name} defines a Secret"
        assert not re.search(
            r"(?i)password\s*[:=]\s*\S{6,}", path.read_text().replace("POSTGRES_PASSWORD", "")
        ), path.name


def test_topics_are_replicated_as_a_2xx_promises(yaml_mod: Any) -> None:
    """#20: three replicas and min.insync.replicas=2 (docs/ingest-api.md), brokers enough to
    hold them, and the collector's check expecting the same of the chart's Kafka."""
    docs = _docs()
    [pool] = [d for d in docs if d["kind"] == "KafkaNodePool"]
    [kafka] = [d for d in docs if d["kind"] == "Kafka"]
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] >= 3 and config["min.insync.replicas"] >= 2
    for doc in docs:
        if doc["kind"] == "KafkaTopic":
            replicas = doc["spec"]["replicas"]
            assert 3 <= replicas <= pool["spec"]["replicas"], doc["metadata"]["name"]
            assert doc["spec"]["config"]["min.insync.replicas"] == 2, doc["metadata"]["name"]
    values = yaml_mod.safe_load((REPO / "helm" / "clickstream" / "values.yaml").read_text())
    durability = values["ingestApi"]["durability"]
    assert (durability["minReplicationFactor"], durability["minInsyncReplicas"]) == (3, 2)
    dev = yaml_mod.safe_load((K8S_DIR / "clickstream-dev-values.yaml").read_text())
    assert dev["ingestApi"]["durability"]["require"] is True
