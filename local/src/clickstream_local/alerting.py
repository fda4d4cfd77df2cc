"""Parts of the platform that act on the stream: Redis (the recommender's state) and
Alertmanager, whose routes deliver the alert rules' alerts to SNS and a webhook.

`alertmanager_config` is the routing the project ships: the local Alertmanager runs it, the
SNS delivery test runs it against a local SNS endpoint, and the chart's AlertmanagerConfig
(templates/alerting/alertmanagerconfig.yaml) renders the same tree for a cluster's
Alertmanager (tests/alerting/test_routes.py compares the two).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clickstream_local.components import Component, http_ok
from clickstream_local.kafka_admin import port_open

ALERTMANAGER_BIN = Path("/usr/bin/prometheus-alertmanager")
REDIS_BIN = Path("/usr/bin/redis-server")

# Grouping and timing of the routes (seconds in the config: Alertmanager durations).
GROUP_WAIT = "10s"
GROUP_INTERVAL = "1m"
REPEAT_INTERVAL = "4h"
ANOMALY_REPEAT_INTERVAL = "1h"
ANOMALY_ALERT = "ClickstreamAnomalyDetected"


@dataclass(frozen=True)
class AlertTargets:
    """Where alerts go. Every field is optional; with none set, alerts stay in Alertmanager."""

    sns_topic_arn: str = ""
    sns_api_url: str = ""  # empty: AWS's endpoint for the region
    sns_region: str = "us-east-1"
    sns_access_key: str = ""  # empty: the default AWS chain (IRSA, instance role)
    sns_secret_key: str = ""
    webhook_url: str = ""
    slack_api_url: str = ""
    slack_channel: str = "#clickstream-alerts"
    email_to: str = ""
    email_from: str = "alertmanager@clickstream.local"
    smarthost: str = ""


SNS_SUBJECT = "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} ({{ .Alerts | len }})"
SNS_MESSAGE = (
    "{{ range .Alerts }}{{ .Labels.alertname }} [{{ .Labels.severity }}]"
    "{{ if .Labels.series }} series={{ .Labels.series }}{{ end }}: "
    "{{ .Annotations.summary }}\n{{ end }}"
)


def receiver(name: str, targets: AlertTargets) -> dict[str, Any]:
    """One receiver with every configured delivery."""
    entry: dict[str, Any] = {"name": name}
    if targets.sns_topic_arn:
        sigv4: dict[str, Any] = {"region": targets.sns_region}
        if targets.sns_access_key:
            sigv4 |= {"access_key": targets.sns_access_key, "secret_key": targets.sns_secret_key}
        sns: dict[str, Any] = {
            "topic_arn": targets.sns_topic_arn,
            "sigv4": sigv4,
            "subject": SNS_SUBJECT,
            "message": SNS_MESSAGE,
            "attributes": {"source": "clickstream"},
            "send_resolved": True,
        }
        if targets.sns_api_url:
            sns["api_url"] = targets.sns_api_url
        entry["sns_configs"] = [sns]
    if targets.webhook_url:
        entry["webhook_configs"] = [{"url": targets.webhook_url, "send_resolved": True}]
    if targets.slack_api_url:
        entry["slack_configs"] = [
            {
                "api_url": targets.slack_api_url,
                "channel": targets.slack_channel,
                "title": SNS_SUBJECT,
                "text": SNS_MESSAGE,
                "send_resolved": True,
            }
        ]
    if targets.email_to and targets.smarthost:
        entry["email_configs"] = [
            {"to": targets.email_to, "from": targets.email_from, "smarthost": targets.smarthost}
        ]
    return entry


def route_tree() -> dict[str, Any]:
    """Pipeline alerts grouped by alert name; anomalies by series, repeated more often (an
    anomaly that persists for an hour is news again). Critical alerts wait less."""
    return {
        "receiver": "clickstream",
        "group_by": ["alertname", "service"],
        "group_wait": GROUP_WAIT,
        "group_interval": GROUP_INTERVAL,
        "repeat_interval": REPEAT_INTERVAL,
        "routes": [
            {
                "receiver": "clickstream",
                "matchers": [f'alertname="{ANOMALY_ALERT}"'],
                "group_by": ["alertname", "series"],
                "repeat_interval": ANOMALY_REPEAT_INTERVAL,
            },
            {
                "receiver": "clickstream",
                "matchers": ['severity="critical"'],
                "group_wait": "5s",
            },
        ],
    }


def alertmanager_config(targets: AlertTargets) -> dict[str, Any]:
    return {
        "route": route_tree(),
        # While the collector itself fails, the event rates it feeds are not news.
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"', 'service="ingest-api"'],
                "target_matchers": [f'alertname="{ANOMALY_ALERT}"'],
                "equal": [],
            }
        ],
        "receivers": [receiver("clickstream", targets)],
    }


class Redis(Component):
    """Debian's redis-server on 127.0.0.1, appendonly, data under the state dir."""

    name = "redis"
    start_timeout = 30.0

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir / "redis"

    def prepare(self) -> None:
        if not REDIS_BIN.is_file():
            raise RuntimeError(f"{REDIS_BIN} missing (run local/bootstrap.sh)")
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            str(REDIS_BIN),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.config.redis_port),
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--protected-mode",
            "yes",
        ]

    def is_ready(self) -> bool:
        import redis

        if not port_open(self.config.redis_port):
            return False
        try:
            client = redis.Redis(port=self.config.redis_port, socket_timeout=1)
            return bool(client.ping())
        except redis.RedisError:
            return False


class Alertmanager(Component):
    """Debian's Alertmanager with the shipped routes; no cluster (a single instance)."""

    name = "alertmanager"
    start_timeout = 30.0

    @property
    def config_file(self) -> Path:
        return self.config.conf_dir / "alertmanager.yml"

    def prepare(self) -> None:
        if not ALERTMANAGER_BIN.is_file():
            raise RuntimeError(f"{ALERTMANAGER_BIN} missing (run local/bootstrap.sh)")
        self.config.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.config.data_dir / "alertmanager").mkdir(parents=True, exist_ok=True)
        targets = AlertTargets(**self.config.alert_targets)
        # JSON is YAML: no YAML writer needed.
        self.config_file.write_text(json.dumps(alertmanager_config(targets), indent=2) + "\n")

    def command(self) -> list[str]:
        c = self.config
        return [
            str(ALERTMANAGER_BIN),
            f"--config.file={self.config_file}",
            f"--storage.path={c.data_dir / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{c.alertmanager_port}",
            "--cluster.listen-address=",
        ]

    def is_ready(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.config.alertmanager_port}/-/ready")
