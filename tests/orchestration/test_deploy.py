"""How the DAGs are deployed: the chart's ConfigMap, the settings' documentation, the two
locks, the image and the Airflow chart values example."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from clickstream_local.config import repo_root
from orchestration.settings import Settings
from stream_processor.config import Settings as ProcessorSettings
from warehouse_loader.config import Settings as LoaderSettings

REPO = repo_root()
sys.path.insert(0, str(REPO / "tests" / "deploy"))

from deployhelpers import find_tool, render  # noqa: E402


def env_names(*settings: type) -> set[str]:
    return {name.upper() for cls in settings for name in cls.model_fields}


def test_the_chart_configmap_holds_only_settings_the_jobs_read() -> None:
    rendered = render("monitoring-enabled-values")
    [configmap] = [
        c
        for c in rendered.of_kind("ConfigMap")
        if c["metadata"]["labels"].get("app.kubernetes.io/component") == "orchestration"
    ]
    read = env_names(Settings, ProcessorSettings, LoaderSettings)
    assert set(configmap["data"]) - read == set()
    data = configmap["data"]
    assert data["ORCHESTRATION_METRICS_NAMESPACE"] == rendered.docs[0]["metadata"]["namespace"]
    assert data["ORCHESTRATION_PUSHGATEWAY_URL"].startswith("http://")
    assert data["DQ_FRESHNESS_MAX_SECONDS"] == "1800"
    # The Airflow values example reads that ConfigMap (release "clickstream").
    values = yaml.safe_load((REPO / "orchestration" / "deploy" / "airflow-values.yaml").read_text())
    assert "clickstream-clickstream-orchestration" in values["extraEnvFrom"]
    assert values["dags"]["gitSync"]["enabled"] is False


def test_every_setting_is_documented() -> None:
    names = sorted(env_names(Settings) - env_names(ProcessorSettings, LoaderSettings))
    guide = (REPO / "docs" / "orchestration.md").read_text()
    table = guide.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    contracts = (REPO / "docs" / "contracts.md").read_text()
    for name in names:
        assert f"| `{name}` |" in guide, f"{name} missing from docs/orchestration.md"
        assert f"`{name}`" in contracts, f"{name} missing from docs/contracts.md"
    for name, field in Settings.model_fields.items():
        if name.upper() in names:
            row = re.search(rf"\| `{name.upper()}` \| [^|]* \| `?([^|`]*)`? \|", table)
            assert row, name
            default = field.default
            shown = row[1].strip()
            assert shown == ("empty" if default == "" else str(default).lower()) or (
                float(shown) == float(default)
            ), (name, shown, default)


def locked(path: Path) -> dict[str, str]:
    return {
        p["name"]: p["version"]
        for p in tomllib.loads(path.read_text())["package"]
        if "version" in p
    }


def test_the_airflow_lock_keeps_the_workspace_versions() -> None:
    """Airflow's environment runs the services' code: the packages both locks hold are at the
    same versions (re-lock orchestration/runtime after changing a pin in the workspace)."""
    workspace = locked(REPO / "uv.lock")
    runtime = locked(REPO / "orchestration" / "runtime" / "uv.lock")
    shared = {
        "pyspark",
        "pyarrow",
        "boto3",
        "botocore",
        "psycopg",
        "pydantic",
        "pydantic-settings",
        "aiokafka",
        "prometheus-client",
        "orjson",
    }
    differ = {n: (workspace[n], runtime[n]) for n in shared if workspace[n] != runtime[n]}
    assert not differ, f"workspace vs orchestration/runtime: {differ}"
    assert runtime["apache-airflow"] == "3.3.2"


def test_the_image_passes_hadolint() -> None:
    hadolint = find_tool("hadolint", python_scripts=True)
    dockerfile = REPO / "orchestration" / "Dockerfile"
    done = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = dockerfile.read_text()
    assert "FROM apache/airflow:3.3.2-python3.11" in text
    assert "site-packages/orchestration/dags" in text
