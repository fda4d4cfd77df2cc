"""Fixtures of the deployment tests (helpers live in deployhelpers.py, importable from here on).

Tools (helm, promtool, checkov) are looked up in <state>/bin, where local/deploy-tools.sh
installs them (state = $CLICKSTREAM_STATE_DIR or <repo>/.state). A missing tool or Python
package fails the test that needs it with the command that installs it; nothing is skipped.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# pytest runs with --import-mode=importlib: make the helper module importable by the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from controlplane import ControlPlane
from deployhelpers import (
    INSTALL_HINT,
    REPO,
    require_module,
    state_dir,
)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def yaml_mod() -> ModuleType:
    return require_module("yaml", "pyyaml")


@pytest.fixture(scope="session")
def jsonschema_mod() -> ModuleType:
    return require_module("jsonschema")


@pytest.fixture(scope="session")
def crd_schemas(yaml_mod: ModuleType) -> dict[str, dict[str, Any]]:
    """openAPIV3Schema of ServiceMonitor, PodMonitor, PrometheusRule and AlertmanagerConfig."""
    crd_dir = state_dir() / "cache" / "crds"
    schemas: dict[str, dict[str, Any]] = {}
    for plural in ("servicemonitors", "podmonitors", "prometheusrules", "alertmanagerconfigs"):
        path = crd_dir / f"monitoring.coreos.com_{plural}.yaml"
        if not path.is_file():
            pytest.fail(
                f"CRD {path} missing; " + INSTALL_HINT.format(state=state_dir()), pytrace=False
            )
        # PyYAML reads a bare `=` (AlertmanagerConfig's matchType enum) as the YAML 1.1
        # "value" tag, which safe_load refuses: quote it.
        text = re.sub(r"^(\s*- )=$", r'\1"="', path.read_text(), flags=re.M)
        crd = yaml_mod.safe_load(text)
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[f"{crd['spec']['group']}/{version['name']}/{kind}"] = version["schema"][
                "openAPIV3Schema"
            ]
    return schemas


@pytest.fixture(scope="session")
def cluster() -> Iterator[ControlPlane]:
    """A real control plane (etcd, kube-apiserver, controller manager, scheduler) with one kwok
    node, the monitoring CRDs installed; stopped and removed at the end of the session."""
    k8s_bin = state_dir() / "bin" / "k8s"
    stages = state_dir() / "cache" / "kwok-stages"
    if not (k8s_bin / "kube-apiserver").is_file() or not (stages / "pod-fast.yaml").is_file():
        pytest.fail(
            f"control plane binaries missing in {k8s_bin}; run `bash local/deploy-tools.sh` "
            "(it runs local/kubernetes/control-plane.sh)",
            pytrace=False,
        )
    work = Path(tempfile.mkdtemp(prefix="k8s-", dir=state_dir()))
    plane = ControlPlane(k8s_bin, stages, work)
    try:
        plane.start()
        crds = sorted((state_dir() / "cache" / "crds").glob("monitoring.coreos.com_*.yaml"))
        assert crds, "prometheus-operator CRDs missing; " + INSTALL_HINT.format(state=state_dir())
        for crd in crds:
            plane.kubectl("apply", "--server-side", "-f", str(crd))
        plane.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s",
            *(f"crd/{c.name.removeprefix('monitoring.coreos.com_').removesuffix('.yaml')}"
              ".monitoring.coreos.com" for c in crds),
        )  # fmt: skip
        yield plane
    finally:
        plane.stop()
        shutil.rmtree(work, ignore_errors=True)
