"""The Terraform module, checked offline: tflint, checkov, the generated Glue catalog, the
lake layout it assumes, and its outputs against the chart's values (one to one)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from clickstream_common import lake
from clickstream_common.catalog import render_terraform_catalog
from tests.aws.tfparse import EXAMPLE, MODULE, TERRAFORM, expression, leaves, load, text
from tests.deploy.deployhelpers import CHART, find_tool, helm, load_yaml_docs

HELM_VALUES_SCRIPT = TERRAFORM / "helm_values.py"


def test_tflint_passes_on_the_module_and_the_example() -> None:
    tflint = find_tool("tflint")
    proc = subprocess.run(
        [tflint, "--recursive", "--config", str(TERRAFORM / ".tflint.hcl"), "--format", "compact"],
        cwd=TERRAFORM,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"tflint found issues:\n{proc.stdout}{proc.stderr}"


def test_tflint_catches_an_unused_variable(tmp_path: Path) -> None:
    # The rule set is really on: a copy of the module with an unused variable fails.
    copy = tmp_path / "module"
    copy.mkdir()
    for path in MODULE.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    with (copy / "variables.tf").open("a") as f:
        f.write('\nvariable "never_used" {\n  description = "x"\n  type        = string\n}\n')
    proc = subprocess.run(
        [find_tool("tflint"), "--config", str(TERRAFORM / ".tflint.hcl"), "--format", "compact"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode != 0
    assert "terraform_unused_declarations" in proc.stdout


def _checkov(folder: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [
            find_tool("checkov"),
            "-d",
            str(folder),
            "--framework",
            "terraform",
            "--skip-download",
            "--quiet",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.stdout.strip(), f"checkov printed nothing (exit {proc.returncode}):\n{proc.stderr}"
    report = json.loads(proc.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_passes_with_every_skip_justified() -> None:
    report = _checkov(TERRAFORM)
    failed = report["results"]["failed_checks"]
    assert not failed, "\n".join(f"{c['check_id']} {c['resource']}" for c in failed)
    assert report["summary"]["passed"] > 100, "checkov checked almost nothing"
    # Every inline skip carries a reason after the check id.
    for path in MODULE.glob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip=" in line:
                assert re.search(r"checkov:skip=CKV2?_AWS_\d+:\S.{10,}", line), line


def test_glue_catalog_json_is_generated_from_the_table_specs() -> None:
    committed = json.loads((MODULE / "glue-catalog.json").read_text())
    assert committed == render_terraform_catalog(), (
        "terraform/modules/clickstream/glue-catalog.json is stale: run "
        "`python -m clickstream_common.catalog_cli terraform "
        "--out terraform/modules/clickstream/glue-catalog.json`"
    )


def test_lake_prefixes_are_the_lake_layout() -> None:
    from warehouse_loader.config import Settings as LoaderSettings

    local = load().locals
    assert text(local["raw_prefix"]) == f"{lake.RAW_PREFIX}/"
    assert text(local["processed_prefix"]) == f"{lake.PROCESSED_PREFIX}/"
    assert text(local["errors_prefix"]) == f"{lake.ERRORS_PREFIX}/"
    assert text(local["manifests_prefix"]) == LoaderSettings().loader_manifest_prefix
    # The chart's default checkpoint location is under the checkpoints prefix.
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert f"s3a://%s/{text(local['checkpoints_prefix'])}stream-processor" in helpers


def _annotation_key(module: Any) -> str:
    return text(module.locals["role_annotation"])


def _helm_tree(module: Any) -> dict[str, Any]:
    """local.helm_values with the annotation key resolved."""
    key = _annotation_key(module)

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                (key if k == "${(local.role_annotation)}" else k): resolve(v)
                for k, v in node.items()
            }
        return node

    return resolve(module.locals["helm_values"])


def _schema_has(schema: dict[str, Any], path: tuple[str, ...]) -> bool:
    node = schema
    for part in path:
        props = node.get("properties", {})
        if part in props:
            node = props[part]
        elif (
            isinstance(node.get("additionalProperties"), dict)
            or node.get("additionalProperties", True) is True
        ):
            node = node.get("additionalProperties") or {}
        else:
            return False
    return True


def test_outputs_map_one_to_one_onto_helm_values() -> None:
    module = load()
    tree = _helm_tree(module)
    paths = {path for path, _ in leaves(tree)}
    key = _annotation_key(module)
    schema = json.loads((CHART / "values.schema.json").read_text())

    by_output: dict[tuple[str, ...], str] = {}
    for name, body in module.outputs.items():
        if name in ("helm_values", "resources"):
            continue
        value = expression(body["value"])
        assert value.startswith("local.helm_values."), f"output {name} is not a Helm value"
        dotted = value.removeprefix("local.helm_values.")
        dotted = dotted.replace("[local.role_annotation]", "." + key.replace(".", "\0"))
        path = tuple(p.replace("\0", ".") for p in dotted.split("."))
        assert path not in by_output, f"{name} and {by_output[path]} give the same value"
        by_output[path] = name
        assert f"Helm value {'.'.join(path)}" in text(body["description"]), name
    assert set(by_output) == paths, "every Helm value has exactly one output"
    for path in paths:
        assert _schema_has(schema, path), f"{'.'.join(path)} is not a value of the chart"
    assert expression(module.outputs["helm_values"]["value"]) == "local.helm_values"


def test_example_values_are_generated_from_the_outputs() -> None:
    module = load()
    example = json.loads((EXAMPLE / "helm_values.example.json").read_text())
    assert {p for p, _ in leaves(example)} == {p for p, _ in leaves(_helm_tree(module))}
    proc = subprocess.run(
        [sys.executable, str(HELM_VALUES_SCRIPT)],
        input=json.dumps(example),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (EXAMPLE / "values-aws.yaml").read_text(), (
        "values-aws.yaml is stale: python terraform/helm_values.py "
        "< terraform/examples/eks/helm_values.example.json > terraform/examples/eks/values-aws.yaml"
    )
    # `terraform output -json` (every output) works as input too.
    wrapped = json.dumps({"helm_values": {"value": example, "type": "object"}})
    again = subprocess.run(
        [sys.executable, str(HELM_VALUES_SCRIPT)],
        input=wrapped,
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.stdout == proc.stdout


def test_helm_values_script_refuses_values_the_chart_does_not_have() -> None:
    proc = subprocess.run(
        [sys.executable, str(HELM_VALUES_SCRIPT)],
        input=json.dumps({"bus": "pigeon", "s3": {"bucket": "b", "colour": "red"}}),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "bus" in proc.stderr and "colour" in proc.stderr


def test_the_chart_installs_with_the_example_values(tmp_path: Path) -> None:
    # What a user adds beside values-aws.yaml: the Secrets and the images (docs/aws.md).
    mine = tmp_path / "my-values.yaml"
    mine.write_text(
        yaml.safe_dump(
            {
                "ingestApi": {"writeKeys": {"existingSecret": "clickstream-write-keys"}},
                "warehouseLoader": {"warehouse": {"existingSecret": "clickstream-redshift"}},
            }
        )
    )
    proc = helm(
        "template",
        "clickstream",
        str(CHART),
        "--namespace",
        "clickstream",
        "-f",
        str(EXAMPLE / "values-aws.yaml"),
        "-f",
        str(mine),
    )
    assert proc.returncode == 0, proc.stderr
    docs = load_yaml_docs(proc.stdout)
    accounts = {
        d["metadata"]["name"]: d["metadata"].get("annotations", {})
        for d in docs
        if d["kind"] == "ServiceAccount"
    }
    values = yaml.safe_load((EXAMPLE / "values-aws.yaml").read_text())
    role = "eks.amazonaws.com/role-arn"
    for component in ("ingestApi", "warehouseLoader"):
        sa = values[component]["serviceAccount"]
        assert accounts[sa["name"]][role] == sa["annotations"][role]
    executor = values["streamProcessor"]["executor"]["serviceAccount"]
    assert accounts[executor["name"]][role] == executor["annotations"][role]

    def env_of(kind: str, component: str) -> dict[str, str]:
        for d in docs:
            labels = d["metadata"].get("labels", {})
            if d["kind"] == kind and labels.get("app.kubernetes.io/component") == component:
                container = d["spec"]["template"]["spec"]["containers"][0]
                return {e["name"]: e.get("value", "") for e in container.get("env", [])}
        raise AssertionError(f"no {kind} {component}")

    ingest = env_of("Deployment", "ingest-api")
    assert ingest["INGEST_SINK"] == "kinesis"
    assert ingest["KINESIS_STREAM_NAME"] == values["kinesis"]["streamName"]
    assert ingest["KINESIS_REGION"] == values["kinesis"]["region"]
    assert ingest["KINESIS_DEAD_LETTER_STREAM_NAME"] == values["kinesis"]["deadLetterStreamName"]
    # Kinesis bus and SQS notifications: nothing needs Kafka.
    assert "KAFKA_BOOTSTRAP_SERVERS" not in ingest
    processor = env_of("StatefulSet", "stream-processor")
    assert processor["PROCESSOR_SOURCE"] == "kinesis"
    assert processor["KINESIS_STREAM_NAME"] == values["kinesis"]["streamName"]
    loader = env_of("Deployment", "warehouse-loader")
    assert (
        loader["LOADER_SQS_QUEUE_URL"] == values["warehouseLoader"]["notifications"]["sqsQueueUrl"]
    )
    assert loader["LOADER_REDSHIFT_IAM_ROLE"] == values["warehouseLoader"]["warehouse"]["iamRole"]


@pytest.mark.parametrize("folder", [MODULE, EXAMPLE], ids=["module", "example"])
def test_every_variable_and_output_is_documented(folder: Path) -> None:
    module = load(folder)
    for name, body in {**module.variables, **module.outputs}.items():
        assert len(text(body.get("description", '""'))) > 10, name
