"""Spark itself loads the chart's executor pod template (the code path of
spark.kubernetes.executor.podTemplateFile, run without a cluster)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deployhelpers import require_module

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    sql = require_module("pyspark.sql", "pyspark")
    session = (
        sql.SparkSession.builder.master("local[1]")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.mark.parametrize("scenario", ["default-values", "aws-redshift-sqs-values"])
def test_spark_loads_the_executor_pod_template(spark: Any, scenario: str, tmp_path: Path) -> None:
    from deployhelpers import render

    rendered = render(scenario)
    expected = rendered.executor_pod_template()
    cm = next(c for c in rendered.of_kind("ConfigMap") if "executor-pod-template.yaml" in c["data"])
    path = tmp_path / "executor-pod-template.yaml"
    path.write_text(cm["data"]["executor-pod-template.yaml"])

    jvm = spark._jvm
    client = jvm.io.fabric8.kubernetes.client.KubernetesClientBuilder().build()
    try:
        loaded = jvm.org.apache.spark.deploy.k8s.KubernetesUtils.loadPodFromTemplate(
            client, str(path), jvm.scala.Option.empty(), spark.sparkContext._jsc.sc().conf()
        )
    finally:
        client.close()
    pod, container = loaded.pod(), loaded.container()
    assert container.getName() == "spark-kubernetes-executor"
    assert container.getSecurityContext().getReadOnlyRootFilesystem()
    assert container.getSecurityContext().getCapabilities().getDrop().contains("ALL")
    assert [m.getMountPath() for m in container.getVolumeMounts()] == ["/tmp"]
    spec = pod.getSpec()
    assert spec.getServiceAccountName() == expected["spec"]["serviceAccountName"]
    assert spec.getSecurityContext().getRunAsNonRoot()
    assert not spec.getAutomountServiceAccountToken()
    labels = pod.getMetadata().getLabels()
    assert labels.get("app.kubernetes.io/component") == "spark-executor"
    assert spec.getTolerations().size() == len(expected["spec"].get("tolerations", []))
