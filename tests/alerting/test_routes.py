"""The shipped alert routing: amtool (Debian's prometheus-alertmanager package) accepts the
local Alertmanager's config, and the chart's AlertmanagerConfig renders the same route tree."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from clickstream_local.alerting import AlertTargets, alertmanager_config
from tests.deploy.deployhelpers import render

AMTOOL = "/usr/bin/amtool"
TARGETS = AlertTargets(
    sns_topic_arn="arn:aws:sns:us-east-1:123456789012:clickstream-alerts",
    sns_api_url="http://127.0.0.1:4566",
    sns_access_key="test",
    sns_secret_key="test",
    webhook_url="http://127.0.0.1:9999/alerts",
    slack_api_url="https://hooks.slack.invalid/services/T/B/X",
    email_to="oncall@example.com",
    smarthost="127.0.0.1:25",
)


def test_amtool_accepts_the_config(tmp_path: Path) -> None:
    config = tmp_path / "alertmanager.yml"
    config.write_text(json.dumps(alertmanager_config(TARGETS)))
    proc = subprocess.run(
        [AMTOOL, "check-config", str(config)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout and " - 1 receivers" in proc.stdout
    receiver = alertmanager_config(TARGETS)["receivers"][0]
    assert {"sns_configs", "webhook_configs", "slack_configs", "email_configs"} <= set(receiver)
    # With no target configured, alerts stay in Alertmanager (its UI and API).
    assert alertmanager_config(AlertTargets())["receivers"] == [{"name": "clickstream"}]


def _matchers(crd: list[dict[str, str]]) -> list[str]:
    return [f'{m["name"]}{m["matchType"]}"{m["value"]}"' for m in crd]


def _native(route: dict[str, Any]) -> dict[str, Any]:
    """An AlertmanagerConfig route in alertmanager.yml's own terms."""
    names = {
        "groupBy": "group_by",
        "groupWait": "group_wait",
        "groupInterval": "group_interval",
        "repeatInterval": "repeat_interval",
    }
    out: dict[str, Any] = {}
    for key, value in route.items():
        if key == "matchers":
            out["matchers"] = _matchers(value)
        elif key == "routes":
            out["routes"] = [_native(r) for r in value]
        else:
            out[names.get(key, key)] = value
    return out


def test_the_chart_routes_like_the_local_alertmanager() -> None:
    [crd] = render("act-values").of_kind("AlertmanagerConfig")
    local = alertmanager_config(TARGETS)
    assert _native(crd["spec"]["route"]) == local["route"]
    [inhibit] = crd["spec"]["inhibitRules"]
    [native_inhibit] = local["inhibit_rules"]
    assert _matchers(inhibit["sourceMatch"]) == native_inhibit["source_matchers"]
    assert _matchers(inhibit["targetMatch"]) == native_inhibit["target_matchers"]
    [receiver] = crd["spec"]["receivers"]
    [sns] = receiver["snsConfigs"]
    native_sns = local["receivers"][0]["sns_configs"][0]
    assert (sns["subject"], sns["message"]) == (native_sns["subject"], native_sns["message"])
    assert yaml.safe_dump(sns["attributes"]) == yaml.safe_dump(native_sns["attributes"])
