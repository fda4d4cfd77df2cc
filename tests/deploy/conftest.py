"""Fixtures of the deployment tests (helpers live in deployhelpers.py, importable from here on).

Tools (helm, promtool, checkov) are looked up in <state>/bin, where local/deploy-tools.sh
installs them (state = $CLICKSTREAM_STATE_DIR or <repo>/.state). A missing tool or Python
package fails the test that needs it with the command that installs it; nothing is skipped.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# pytest runs with --import-mode=importlib: make the helper module importable by the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))

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
