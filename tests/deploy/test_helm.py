"""helm lint and helm template of every ci/*.yaml scenario, validated against Kubernetes
schemas (two minor versions, strict) and the prometheus-operator CRD schemas."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from deployhelpers import (
    CHART,
    DASHBOARDS,
    KUBE_VERSIONS,
    RULES_FILE,
    SCENARIOS,
    helm,
    load_yaml_docs,
    render,
    require_module,
)

MONITORING_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule", "AlertmanagerConfig")


def test_scenarios_exist() -> None:
    assert {
        "default-values",
        "aws-redshift-sqs-values",
        "monitoring-enabled-values",
        "minimal-values",
    } <= set(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(scenario: str) -> None:
    proc = helm("lint", "--strict", str(CHART), "-f", str(CHART / "ci" / f"{scenario}.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _validate_k8s(doc: dict[str, Any], version: str) -> list[str]:
    kv = require_module("kubernetes_validate", "kubernetes-validate")
    try:
        kv.validate(doc, version, strict=True)
    except kv.ValidationError as exc:
        return [f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}"]
    return []


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rendered_objects_validate(scenario: str, version: str) -> None:
    rendered = render(scenario, version)
    assert rendered.docs, "nothing rendered"
    errors: list[str] = []
    for doc in rendered.docs:
        if doc["kind"] in MONITORING_KINDS:
            continue  # CRDs: test_monitoring_objects_match_crds
        errors += _validate_k8s(doc, version)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_executor_pod_template_is_a_valid_pod(scenario: str, version: str) -> None:
    pod = render(scenario, version).executor_pod_template()
    assert pod is not None, "no executor pod template rendered"
    pod = copy.deepcopy(pod)
    pod["metadata"]["name"] = "executor"  # Spark names the pods; a template has no name
    assert not _validate_k8s(pod, version)
    assert pod["spec"]["containers"][0]["name"] == "spark-kubernetes-executor"


def _strict(schema: Any) -> Any:
    """Reject unknown fields like the API server's strict field validation does: every object
    schema with properties and no other rule for extra keys gets additionalProperties: false."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_monitoring_objects_match_crds(
    scenario: str, crd_schemas: dict[str, Any], jsonschema_mod: Any
) -> None:
    errors: list[str] = []
    for doc in render(scenario).docs:
        if doc["kind"] not in MONITORING_KINDS:
            continue
        key = f"{doc['apiVersion']}/{doc['kind']}"
        assert key in crd_schemas, f"no CRD schema for {key}"
        validator = jsonschema_mod.Draft7Validator(_strict(crd_schemas[key]))
        errors += [
            f"{doc['kind']}/{doc['metadata']['name']}: {e.message} at {list(e.path)}"
            for e in validator.iter_errors(doc)
        ]
    assert not errors, "\n".join(errors)


def test_crd_validation_catches_mistakes(crd_schemas: dict[str, Any], jsonschema_mod: Any) -> None:
    """The CRD check is not vacuous: a wrong type and an unknown field are caught."""
    monitor = copy.deepcopy(render("monitoring-enabled-values").of_kind("ServiceMonitor")[0])
    schema = _strict(crd_schemas["monitoring.coreos.com/v1/ServiceMonitor"])
    assert not list(jsonschema_mod.Draft7Validator(schema).iter_errors(monitor))
    monitor["spec"]["endpoints"][0]["interval"] = 30
    monitor["spec"]["endpoints"][0]["portt"] = "http"
    assert len(list(jsonschema_mod.Draft7Validator(schema).iter_errors(monitor))) >= 2


def test_every_monitoring_kind_is_rendered_by_some_scenario() -> None:
    kinds = {d["kind"] for s in SCENARIOS for d in render(s).docs}
    assert set(MONITORING_KINDS) <= kinds
    names = {d["metadata"]["name"] for s in SCENARIOS for d in render(s).of_kind("ConfigMap")}
    assert any("dashboard" in n for n in names), "no scenario renders the dashboards"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_monitoring_covers_every_service(scenario: str) -> None:
    rendered = render(scenario)
    for kind in ("ServiceMonitor", "PodMonitor"):
        monitors = rendered.of_kind(kind)
        if monitors:
            components = {m["metadata"]["labels"]["app.kubernetes.io/component"] for m in monitors}
            # Every workload the scenario deploys (the recommender and the anomaly detector
            # are optional).
            workloads = {
                w["metadata"]["labels"]["app.kubernetes.io/component"]
                for k in ("Deployment", "StatefulSet")
                for w in rendered.of_kind(k)
            }
            assert {"ingest-api", "stream-processor", "warehouse-loader"} <= components
            assert components == workloads


def test_prometheusrule_embeds_the_rules_file(yaml_mod: Any) -> None:
    """The rules file as it is, with each selector scoped to the release's namespace."""
    rule = render("monitoring-enabled-values").of_kind("PrometheusRule")[0]
    scoped = RULES_FILE.read_text().replace("{job=", '{namespace="clickstream", job=')
    assert rule["spec"] == yaml_mod.safe_load(scoped)


def test_dashboard_configmaps_embed_the_json_files() -> None:
    rendered = render("monitoring-enabled-values")
    maps = {
        cm["metadata"]["name"]: cm
        for cm in rendered.of_kind("ConfigMap")
        if cm["metadata"]["labels"].get("grafana_dashboard") == "1"
    }
    assert len(maps) == len(DASHBOARDS) >= 2
    embedded = {k: json.loads(v) for cm in maps.values() for k, v in cm["data"].items()}
    for path in DASHBOARDS:
        assert embedded[path.name] == json.loads(path.read_text())


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--set", "ingestApi.replicaCount=two"], "/ingestApi/replicaCount"),
        (
            ["--set-string", "streamProcessor.executor.instances=2"],
            "/streamProcessor/executor/instances",
        ),
        (["--set", "ingestApi.autoscaling.enabled=maybe"], "/ingestApi/autoscaling/enabled"),
        (
            ["--set", "warehouseLoader.notifications.source=s3"],
            "/warehouseLoader/notifications/source",
        ),
        (
            ["--set", "warehouseLoader.warehouse.dialect=mysql"],
            "/warehouseLoader/warehouse/dialect",
        ),
        (["--set", "ingestApi.image.pullPolicy=Sometimes"], "/ingestApi/image/pullPolicy"),
        (["--set", "ingestApi.writeKeys.inline=secret"], "additional properties"),
        (["--set", "unknownTopLevel=1"], "additional properties"),
        (["--set", "streamProcessor.driver.memory=lots"], "/streamProcessor/driver/memory"),
    ],
)
def test_values_schema_rejects_bad_values(flags: list[str], message: str) -> None:
    proc = helm(
        "template", "cs", str(CHART), "-f", str(CHART / "ci" / "default-values.yaml"), *flags
    )
    assert proc.returncode != 0, f"helm template accepted {flags}"
    assert "schema" in proc.stderr and message in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--set", "kafka.bootstrapServers="], "kafka.bootstrapServers is required"),
        (
            ["--set", "ingestApi.writeKeys.existingSecret="],
            "ingestApi.writeKeys.existingSecret is required",
        ),
        (
            ["--set", "warehouseLoader.warehouse.existingSecret="],
            "warehouseLoader.warehouse.existingSecret is required",
        ),
        (["--set", "warehouseLoader.notifications.source=sqs"], "sqsQueueUrl is required"),
        (["--set", "warehouseLoader.warehouse.dialect=redshift"], "iamRole is required"),
        (
            [
                "--set",
                "monitoring.serviceMonitor.enabled=true",
                "--set",
                "monitoring.podMonitor.enabled=true",
            ],
            "alternatives",
        ),
    ],
)
def test_missing_required_values_fail_with_a_clear_message(flags: list[str], message: str) -> None:
    proc = helm(
        "template", "cs", str(CHART), "-f", str(CHART / "ci" / "default-values.yaml"), *flags
    )
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_values_are_documented_line_by_line() -> None:
    """Every key of values.yaml has a comment line right above it (keys of a multi-line
    default such as a probe object are covered by the comment above that object)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "- ")):
            continue
        indent = len(line) - len(line.lstrip())
        prev = lines[i - 1].strip() if i else ""
        if not prev.startswith("#") and not _inside_block_value(lines, i, indent):
            undocumented.append(f"line {i + 1}: {stripped.split(':', 1)[0]}")
    assert not undocumented, "undocumented values:\n" + "\n".join(undocumented)


def _inside_block_value(lines: list[str], i: int, indent: int) -> bool:
    """True for keys of a multi-line default documented as a whole (probes, label maps)."""
    for j in range(i - 1, -1, -1):
        line = lines[j]
        if not line.strip() or line.strip().startswith("#"):
            continue
        parent_indent = len(line) - len(line.lstrip())
        if parent_indent < indent:
            key = line.strip().split(":", 1)[0]
            return key in {
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
                "labels",
                "httpGet",
                "metricsFrom",
            } or line.strip().startswith("- ")
    return False


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_notes_show_how_to_reach_the_api_and_metrics(scenario: str, tmp_path: Path) -> None:
    """NOTES.txt rendered (helm template skips NOTES, so it is rendered through tpl in a copy)."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "notes-src.txt").write_text((CHART / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ tpl (.Files.Get "notes-src.txt") . | toJson }}\n'
    )
    proc = helm(
        "template", "cs", str(chart), "-n", "clickstream",
        "-f", str(CHART / "ci" / f"{scenario}.yaml"),
        "--show-only", "templates/zz-notes.yaml",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    notes = load_yaml_docs(proc.stdout)[0]["data"]["notes"]
    assert "/v1/events" in notes and "/readyz" in notes
    for metrics in ("grep '^ingest_'", "grep '^processor_'", "grep '^loader_'"):
        assert metrics in notes
    assert "port-forward" in notes


def test_chart_readme_is_generated_from_the_values() -> None:
    """helm/clickstream/README.md is exactly what chart_readme.py makes of values.yaml."""
    import chart_readme

    assert chart_readme.README.read_text() == chart_readme.generate(), (
        "helm/clickstream/README.md is out of date: run python tests/deploy/chart_readme.py --write"
    )
    keys = dict(chart_readme.documented_keys((CHART / "values.yaml").read_text()))
    for key in (
        "kafka.security.sasl.mechanism",
        "ingestApi.ingress.tls",
        "streamProcessor.sparkConf",
    ):
        assert keys[key], key
    assert "## Upgrade notes" in chart_readme.README.read_text()
