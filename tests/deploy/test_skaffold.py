"""skaffold.yaml: valid against skaffold's JSON schema of its apiVersion, one docker artifact
per service built from the repository root, each image wired into the chart's values."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from deployhelpers import CHART, DOCKERFILES, INSTALL_HINT, REPO, helm, load_yaml_docs, state_dir


@pytest.fixture(scope="module")
def skaffold(yaml_mod: Any) -> dict[str, Any]:
    return yaml_mod.safe_load((REPO / "skaffold.yaml").read_text())


@pytest.fixture(scope="module")
def schema(skaffold: dict[str, Any]) -> dict[str, Any]:
    version = skaffold["apiVersion"].split("/", 1)[1]
    path = state_dir() / "cache" / "schemas" / f"skaffold-{version}.json"
    if not path.is_file():
        pytest.fail(
            f"skaffold schema {path} missing; " + INSTALL_HINT.format(state=state_dir()),
            pytrace=False,
        )
    return json.loads(path.read_text())


def test_schema_version_is_the_one_deploy_tools_fetches(skaffold: dict[str, Any]) -> None:
    script = (REPO / "local" / "deploy-tools.sh").read_text()
    pinned = re.search(r'^SKAFFOLD_SCHEMA_VERSION="([^"]+)"', script, re.M).group(1)
    assert skaffold["apiVersion"] == f"skaffold/{pinned}"


def test_skaffold_yaml_matches_its_schema(
    skaffold: dict[str, Any], schema: dict[str, Any], jsonschema_mod: Any
) -> None:
    validator = jsonschema_mod.Draft7Validator(schema)
    errors = [f"{list(e.path)}: {e.message[:300]}" for e in validator.iter_errors(skaffold)]
    assert not errors, "\n".join(errors)
    # the schema is strict enough to catch a typo
    broken = json.loads(json.dumps(skaffold))
    broken["build"]["artifacts"][0]["dockerr"] = broken["build"]["artifacts"][0].pop("docker")
    assert list(validator.iter_errors(broken))


def test_one_artifact_per_service(skaffold: dict[str, Any]) -> None:
    artifacts = skaffold["build"]["artifacts"]
    dockerfiles = {a["docker"]["dockerfile"] for a in artifacts}
    assert dockerfiles == {str(p.relative_to(REPO)) for p in DOCKERFILES}
    assert all(a["context"] == "." for a in artifacts)


def test_images_are_wired_into_the_chart(skaffold: dict[str, Any], yaml_mod: Any) -> None:
    [release] = skaffold["manifests"]["helm"]["releases"]
    assert (REPO / release["chartPath"]).resolve() == CHART
    templates = release["setValueTemplates"]
    values = yaml_mod.safe_load((CHART / "values.yaml").read_text())
    for artifact in skaffold["build"]["artifacts"]:
        key = re.sub(r"[^A-Za-z0-9]", "_", artifact["image"])
        wired = {k: v for k, v in templates.items() if key in v}
        assert f"{{{{.IMAGE_REPO_{key}}}}}" in wired.values()
        assert f"{{{{.IMAGE_TAG_{key}}}}}" in wired.values()
        for path in wired:
            node = values
            for part in path.split("."):
                assert part in node, f"{path} is not a chart value"
                node = node[part]


def test_profiles(skaffold: dict[str, Any]) -> None:
    profiles = {p["name"]: p for p in skaffold["profiles"]}
    assert {"dev", "ci"} <= set(profiles)
    assert profiles["ci"]["build"]["local"]["push"] is True
    assert profiles["dev"]["build"]["local"]["push"] is False


def test_port_forwards_name_rendered_services(skaffold: dict[str, Any]) -> None:
    """The dev profile forwards Services that the chart renders for this release."""
    [release] = skaffold["manifests"]["helm"]["releases"]
    args = ["template", release["name"], str(CHART), "-n", release["namespace"]]
    for values in release["valuesFiles"]:
        args += ["-f", str(REPO / values)]
    proc = helm(*args)
    assert proc.returncode == 0, proc.stderr
    services = {
        d["metadata"]["name"]: {p["port"] for p in d["spec"]["ports"]}
        for d in load_yaml_docs(proc.stdout)
        if d["kind"] == "Service"
    }
    forwards = next(p for p in skaffold["profiles"] if p["name"] == "dev")["portForward"]
    for fwd in forwards:
        assert fwd["resourceName"] in services, fwd
        assert fwd["port"] in services[fwd["resourceName"]]
