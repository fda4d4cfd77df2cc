"""The chart sets only variables the services read, with the services' own defaults.

Config comes from the Settings classes (docs/contracts.md is generated from them): every
environment variable a chart container or the orchestration ConfigMap sets must be a field of
the Settings class of the process that reads it, every `[NAME]` a value's comment names must
be one, and a value that stands for a setting defaults to the code's default unless the list
below says why the chart differs.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from deployhelpers import CHART, SCENARIOS, pod_specs, render
from pydantic import BaseModel, TypeAdapter

from anomaly_detector.config import Settings as AnomalySettings
from ingest_api.config import Settings as IngestSettings
from orchestration.settings import Settings as OrchestrationSettings
from recommender.config import Settings as RecommenderSettings
from stream_processor.config import Settings as ProcessorSettings
from warehouse_loader.config import Settings as LoaderSettings

SETTINGS_OF_COMPONENT: dict[str, tuple[type[BaseModel], ...]] = {
    "ingest-api": (IngestSettings,),
    "stream-processor": (ProcessorSettings,),
    "warehouse-loader": (LoaderSettings,),
    "anomaly-detector": (AnomalySettings,),
    "recommender": (RecommenderSettings,),
    # The DAGs' tasks read their own settings, the processor's (Spark tasks) and the loader's
    # (the catch-up load).
    "orchestration": (OrchestrationSettings, ProcessorSettings, LoaderSettings),
}
ALL_SETTINGS = {cls for classes in SETTINGS_OF_COMPONENT.values() for cls in classes}

# Variables the chart sets that no Settings class reads, and who does.
NOT_SETTINGS = {
    "SPARK_LOCAL_DIRS": "Spark's own variable (shuffle and state directories)",
    "COLLECTOR_URL": "the `helm test` pod's curl target",
}

# Values whose default differs from the code's on purpose (the code's defaults serve a
# laptop; the chart's a cluster).
CHART_DEFAULT_DIFFERS = {
    "kafka.bootstrapServers": "no cluster address can be a default (required)",
    "streamProcessor.spark.master": "the chart runs executors as pods (k8s://)",
    "streamProcessor.driver.memory": "sized to the driver pod's memory limit",
    "warehouseLoader.warehouse.dsnKey": "the key of the DSN in a Secret, not the DSN",
    "ingestApi.writeKeys.key": "the key of the write keys in a Secret",
    "recommender.redis.urlKey": "the key of the URL in a Secret",
    "recommender.readKeys.key": "the key of the list in a Secret",
    "s3.credentials.accessKeyIdKey": "the key in a Secret",
    "s3.credentials.secretAccessKeyKey": "the key in a Secret",
    "kafka.security.sasl.usernameKey": "the key in a Secret",
    "kafka.security.sasl.passwordKey": "the key in a Secret",
}


def _fields(classes: tuple[type[BaseModel], ...] | set[type[BaseModel]]) -> set[str]:
    return {name.upper() for cls in classes for name in cls.model_fields}


def _component(meta: dict[str, Any]) -> str:
    return str(meta.get("labels", {}).get("app.kubernetes.io/component", ""))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_container_variable_is_a_setting_of_its_service(scenario: str) -> None:
    rendered = render(scenario)
    wrong: list[str] = []
    checked = 0
    for name, meta, spec in pod_specs(rendered):
        component = _component(meta)
        if component not in SETTINGS_OF_COMPONENT or name == "executor-pod-template":
            continue
        known = _fields(SETTINGS_OF_COMPONENT[component]) | set(NOT_SETTINGS)
        for container in spec["containers"]:
            for env in container.get("env", []):
                checked += 1
                if env["name"] not in known:
                    wrong.append(f"{name}: {env['name']}")
    assert checked, "no container environment rendered"
    assert not wrong, f"set by the chart but read by no Settings field: {wrong}"


def test_every_orchestration_configmap_key_is_a_setting() -> None:
    rendered = render("monitoring-enabled-values")
    configmaps = [
        doc
        for doc in rendered.of_kind("ConfigMap")
        if _component(doc["metadata"]) == "orchestration"
    ]
    assert configmaps, "the scenario renders no orchestration ConfigMap"
    keys = set(configmaps[0]["data"])
    assert {"PROCESSOR_SESSION_GAP", "PROCESSOR_EXCLUDE_BOTS"} <= keys
    assert keys - _fields(SETTINGS_OF_COMPONENT["orchestration"]) == set()


def _values_with_variables() -> list[tuple[str, list[str]]]:
    """(dotted path of a value, the variables its `# --` comment names in brackets)."""
    found: list[tuple[str, list[str]]] = []
    stack: list[tuple[int, str]] = []
    comment = ""
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment = (
                comment + " " + stripped
                if comment and not stripped.startswith("# --")
                else stripped
            )
            continue
        match = re.match(r"^( *)([A-Za-z0-9_]+):", line)
        if not match:
            comment = ""
            continue
        indent = len(match[1])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match[2]))
        names = re.findall(r"\[([A-Z][A-Z0-9_, ]+)\]", comment)
        if names:
            path = ".".join(key for _i, key in stack)
            found.append((path, [n.strip() for group in names for n in group.split(",")]))
        comment = ""
    return found


def _value(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for key in path.split("."):
        node = node[key]
    return node


def test_values_name_settings_fields() -> None:
    documented = _values_with_variables()
    assert len(documented) > 40, "values.yaml comments name fewer variables than expected"
    known = _fields(ALL_SETTINGS) | set(NOT_SETTINGS)
    unknown = {(path, n) for path, names in documented for n in names if n not in known}
    assert not unknown, f"values naming variables no Settings class reads: {sorted(unknown)}"


def test_chart_defaults_equal_the_code_defaults(yaml_mod: Any) -> None:
    values = yaml_mod.safe_load((CHART / "values.yaml").read_text())
    fields = {name.upper(): info for cls in ALL_SETTINGS for name, info in cls.model_fields.items()}
    differ: list[str] = []
    compared = 0
    for path, names in _values_with_variables():
        value = _value(values, path)
        if value in ("", None) or names[0] in NOT_SETTINGS:
            continue  # empty: derived by the templates, or unset like the code's None
        for name in names:
            info = fields[name]
            try:
                chart_value = TypeAdapter(info.annotation).validate_python(value)
            except ValueError:
                chart_value = value
            code_value = info.get_default(call_default_factory=True)
            if path in CHART_DEFAULT_DIFFERS:
                # The list of exceptions must not outlive them.
                assert chart_value != code_value, f"{path} now equals the code's default"
                continue
            compared += 1
            if chart_value != code_value:
                differ.append(f"{path}={value!r} but {name} defaults to {code_value!r}")
    assert compared > 25
    assert not differ, "\n".join(differ)


def test_the_promoted_settings_reach_their_containers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The values become environment the services parse (pydantic-settings, as in the pod)."""
    rendered = render(
        "default-values",
        None,
        "--set-json",
        'ingestApi.trustedProxies=["10.0.0.0/8"]',
        "--set",
        "ingestApi.rateLimit.eventsPerSecond=50,ingestApi.rateLimit.burst=100",
        "--set",
        "streamProcessor.sessionGap=15 minutes,streamProcessor.excludeBots=false",
        "--set",
        "warehouseLoader.notifications.source=sqs,"
        "warehouseLoader.notifications.sqsQueueUrl=https://sqs.example/q,"
        "warehouseLoader.notifications.sqsVisibilityTimeoutSeconds=600",
    )
    env: dict[str, dict[str, str]] = {}
    for _name, meta, spec in pod_specs(rendered):
        for container in spec["containers"]:
            for e in container.get("env", []):
                if "value" in e:
                    env.setdefault(_component(meta), {})[e["name"]] = e["value"]

    def settings(component: str, cls: type[Any]) -> Any:
        with monkeypatch.context() as m:
            for key, value in env[component].items():
                m.setenv(key, value)
            return cls()

    ingest = settings("ingest-api", IngestSettings)
    assert ingest.ingest_trusted_proxies == ("10.0.0.0/8",)
    assert (ingest.ingest_rate_limit_events_per_second, ingest.ingest_rate_limit_burst) == (50, 100)
    assert ingest.ingest_cors_allowed_origins == ("*",)
    assert ingest.ingest_client_ip_ipv4_prefix == 24
    processor = settings("stream-processor", ProcessorSettings)
    assert processor.processor_session_gap == "15 minutes"
    assert processor.processor_exclude_bots is False
    loader = settings("warehouse-loader", LoaderSettings)
    assert loader.loader_sqs_visibility_timeout_seconds == 600
    assert loader.loader_sqs_wait_seconds == 5
