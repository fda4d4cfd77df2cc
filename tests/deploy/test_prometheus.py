"""Alert rules and dashboards: promtool check/test, every alert tested both ways, every PromQL
expression of the dashboards and rules valid, and only contract metric names used."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from deployhelpers import (
    DASHBOARDS,
    RULE_TESTS,
    RULES_FILE,
    contract_metric_names,
    find_tool,
    render,
    run,
)

# Grafana's built-in variables, replaced the way Grafana would for a 1-hour dashboard.
GRAFANA_VARS = {"$__rate_interval": "2m", "$__interval": "1m", "$__range": "1h"}
PROMQL_WORDS = {
    "sum",
    "by",
    "without",
    "rate",
    "irate",
    "increase",
    "histogram_quantile",
    "max_over_time",
    "max",
    "min",
    "avg",
    "count",
    "topk",
    "bottomk",
    "sort_desc",
    "sort",
    "changes",
    "vector",
    "on",
    "ignoring",
    "or",
    "and",
    "unless",
    "le",
    "humanize",
    "offset",
    "abs",
    "clamp_min",
    "group_left",
    "group_right",
    "absent",
    "time",
    "scalar",
}


def dashboard_exprs() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr with Grafana variables substituted)."""
    out = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for var, value in GRAFANA_VARS.items():
                    expr = expr.replace(var, value)
                out.append((board["uid"], panel["title"], expr))
    return out


def rule_exprs(yaml_mod: Any) -> list[tuple[str, str]]:
    rules = yaml_mod.safe_load(RULES_FILE.read_text())
    return [(r.get("alert") or r["record"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


def test_promtool_check_rules() -> None:
    proc = run([find_tool("promtool"), "check", "rules", str(RULES_FILE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_test_rules(test_file: Path) -> None:
    proc = run([find_tool("promtool"), "test", "rules", test_file.name], cwd=test_file.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_is_tested_firing_and_silent(yaml_mod: Any) -> None:
    alerts = {name for name, _ in rule_exprs(yaml_mod)}
    fires: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        doc = yaml_mod.safe_load(path.read_text())
        assert doc["rule_files"] == ["../clickstream.rules.yaml"]
        for test in doc["tests"]:
            for case in test.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    assert alerts - fires == set(), f"alerts never tested firing: {sorted(alerts - fires)}"
    assert alerts - silent == set(), f"alerts never tested silent: {sorted(alerts - silent)}"


def test_alert_list_is_documented(yaml_mod: Any, repo: Path) -> None:
    docs = (repo / "docs" / "kubernetes.md").read_text()
    missing = [name for name, _ in rule_exprs(yaml_mod) if name not in docs]
    assert not missing, f"alerts missing from docs/kubernetes.md: {missing}"


def test_every_promql_expression_is_valid(tmp_path: Path, yaml_mod: Any) -> None:
    """Each expression becomes a recording rule; promtool parses them all."""
    exprs = [e for _, _, e in dashboard_exprs()] + [e for _, e in rule_exprs(yaml_mod)]
    assert len(exprs) > 30
    rules = {
        "groups": [
            {
                "name": "expression-check",
                "rules": [
                    {"record": f"clickstream_check:expr_{i}", "expr": expr}
                    for i, expr in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "exprs.rules.yaml"
    path.write_text(yaml_mod.safe_dump(rules))
    proc = run([find_tool("promtool"), "check", "rules", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout


def test_promql_check_catches_a_broken_expression(tmp_path: Path, yaml_mod: Any) -> None:
    path = tmp_path / "bad.rules.yaml"
    path.write_text(
        yaml_mod.safe_dump(
            {
                "groups": [
                    {
                        "name": "bad",
                        "rules": [
                            {
                                "record": "bad:expr",
                                "expr": "sum(rate(ingest_http_requests_total[5m]) by",
                            }
                        ],
                    }
                ]
            }
        )
    )
    assert run([find_tool("promtool"), "check", "rules", str(path)]).returncode != 0


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"by \([^)]*\)|on\([^)]*\)|on \([^)]*\)", "", expr)
    tokens = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {t for t in tokens if t not in PROMQL_WORDS and not t.isdigit() and "_" in t}


def test_only_contract_metrics_are_queried(yaml_mod: Any) -> None:
    known = contract_metric_names()
    assert "ingest_http_requests_total" in known and "processor_active_users" in known
    suffixes = ("_bucket", "_sum", "_count")
    unknown = set()
    for expr in [e for _, _, e in dashboard_exprs()] + [e for _, e in rule_exprs(yaml_mod)]:
        for name in _metric_names(expr):
            base = next((name[: -len(s)] for s in suffixes if name.endswith(s)), name)
            if name not in known and base not in known:
                unknown.add(name)
    assert not unknown, f"metrics in neither docs/contracts.md nor docs/kubernetes.md: {unknown}"


JOBS = {"ingest": "ingest-api", "processor": "stream-processor", "loader": "warehouse-loader"}
SELECTOR = re.compile(r"\b((?:ingest|processor|loader)_[a-z0-9_]+|up)(\{[^}]*\})?")


def test_every_selector_names_its_job_first(yaml_mod: Any) -> None:
    """The chart scopes the rules to its namespace by prefixing each `{job=` matcher, so every
    selector must start with the job of the service that exposes the metric."""
    for name, expr in rule_exprs(yaml_mod):
        for metric, labels in SELECTOR.findall(expr):
            assert labels.startswith('{job="') or labels.startswith('{job=~"'), (name, metric)
            if metric != "up":
                assert labels.startswith(f'{{job="{JOBS[metric.split("_")[0]]}"'), (name, metric)
        assert not re.search(r"\b(namespace|pod|instance)\s*=", expr), name


def test_every_alert_has_a_runbook_section(yaml_mod: Any, repo: Path) -> None:
    runbooks = (repo / "docs" / "runbooks.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^## (.+)$", runbooks, flags=re.M)
    }
    doc = yaml_mod.safe_load(RULES_FILE.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            url = rule["annotations"]["runbook_url"]
            prefix = "https://github.com/clickstream/clickstream/blob/main/docs/runbooks.md#"
            assert url == prefix + rule["alert"].lower(), rule["alert"]
            assert rule["alert"].lower() in anchors, f"docs/runbooks.md: no section {rule['alert']}"


def test_chart_scopes_every_selector_to_the_release_namespace(yaml_mod: Any) -> None:
    rule = render("monitoring-enabled-values").of_kind("PrometheusRule")[0]
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            for _metric, labels in SELECTOR.findall(r["expr"]):
                assert labels.startswith('{namespace="clickstream", job='), (r["alert"], labels)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_json(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["uid"].startswith("clickstream-") and board["title"].startswith("Clickstream / ")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) >= 6
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        assert panel.get("description"), f"{panel['title']} has no description"


def test_dashboards_cover_the_issue() -> None:
    titles = {
        json.loads(p.read_text())["uid"]: {x["title"] for x in json.loads(p.read_text())["panels"]}
        for p in DASHBOARDS
    }
    health = titles["clickstream-pipeline-health"]
    business = titles["clickstream-business"]
    assert "Freshness by stage (p95)" in health
    assert {"Live users", "Events by type", "Trending products", "Purchase funnel (1h)"} <= business
