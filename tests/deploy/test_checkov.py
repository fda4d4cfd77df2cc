"""checkov on the rendered chart (every scenario), on k8s/ and on the Dockerfiles: no failed
check except the skips of tests/deploy/.checkov.yaml, each with its reason."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from deployhelpers import DOCKERFILES, K8S_DIR, REPO, SCENARIOS, find_tool, render, run

CONFIG = Path(__file__).with_name(".checkov.yaml")


def _checkov(*args: str) -> list[dict[str, Any]]:
    checkov = find_tool("checkov")
    proc = run([checkov, "--config-file", str(CONFIG), "-o", "json", *args], timeout=600)
    assert proc.stdout.strip(), f"checkov printed nothing (exit {proc.returncode}):\n{proc.stderr}"
    reports = _json_documents(proc.stdout)
    failed = [c for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    assert proc.returncode == 0 or failed, f"checkov exit {proc.returncode}:\n{proc.stderr}"
    return reports


def _json_documents(text: str) -> list[dict[str, Any]]:
    """checkov prints one JSON value per scanned directory, one after the other."""
    decoder, out, pos = json.JSONDecoder(), [], 0
    text = text.strip()
    while pos < len(text):
        value, pos = decoder.raw_decode(text, pos)
        out += value if isinstance(value, list) else [value]
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _failures(reports: list[dict[str, Any]]) -> list[str]:
    return [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({c.get('file_path')})"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]


def test_checkov_rendered_chart_and_dev_manifests(tmp_path: Path) -> None:
    rendered = tmp_path / "rendered"
    rendered.mkdir()
    for scenario in SCENARIOS:
        (rendered / f"{scenario}.yaml").write_text(render(scenario).text)
    reports = _checkov("--framework", "kubernetes", "-d", str(rendered), "-d", str(K8S_DIR))
    assert not _failures(reports), "\n".join(_failures(reports))
    passed = sum(r["summary"]["passed"] for r in reports)
    assert passed > 100, "checkov checked almost nothing"


def test_checkov_dockerfiles() -> None:
    files = [arg for path in DOCKERFILES for arg in ("-f", str(path))]
    reports = _checkov("--framework", "dockerfile", *files)
    assert not _failures(reports), "\n".join(_failures(reports))
    assert sum(r["summary"]["passed"] for r in reports) > 20


def test_every_skip_has_a_reason_and_is_documented() -> None:
    lines = CONFIG.read_text().splitlines()
    docs = (REPO / "docs" / "kubernetes.md").read_text()
    skips = [
        (i, m.group(1)) for i, line in enumerate(lines) if (m := re.match(r"\s*-\s*(CKV\w+)", line))
    ]
    assert skips
    for i, check in skips:
        assert lines[i - 1].strip().startswith("#"), f"{check} has no reason above it"
        assert check in docs, f"{check} is not listed in docs/kubernetes.md"
    # the resource-scoped skips (annotations) are documented as well
    for check in ("CKV_K8S_38", "CKV_K8S_40"):
        assert check in docs
