"""Manifest policy: security context, probes, resources, labels, RBAC and secrets of every
rendered scenario (executor pods included, through their pod template)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from deployhelpers import (
    CHART,
    RELEASE,
    SCENARIOS,
    contract_env_names,
    pod_specs,
    render,
)

LABEL_KEYS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/component",
    "helm.sh/chart",
)
# What a Spark driver in client mode needs (see templates/stream-processor/rbac.yaml).
EXPECTED_DRIVER_RULES = {
    ("", "pods"): {"get", "list", "watch", "create", "patch", "delete", "deletecollection"},
    ("", "configmaps"): {"create", "delete", "deletecollection"},
}
SECRET_ENV = re.compile(r"(SECRET|PASSWORD|TOKEN|WRITE_KEYS|DSN|ACCESS_KEY)")
EXECUTOR = "executor-pod-template"
# Cluster-scoped objects of the chart (the Spark driver's admission policy and its binding).
CLUSTER_SCOPED = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def _one_shot(name: str) -> bool:
    """Pods that serve nothing and need no probes: executors (Spark watches them) and the
    `helm test` hook pod."""
    return name == EXECUTOR or name.startswith("Pod/")


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pods_run_hardened(scenario: str) -> None:
    problems = []
    for name, _meta, spec in pod_specs(render(scenario)):
        pod_sc = spec.get("securityContext", {})
        if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: pod seccompProfile is not RuntimeDefault")
        for c in _containers(spec):
            sc = c.get("securityContext", {})
            where = f"{name}/{c['name']}"
            if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
                problems.append(f"{where}: runAsNonRoot not set")
            uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
            if not isinstance(uid, int) or uid < 10000:
                problems.append(f"{where}: runAsUser {uid!r} is not a high non-root UID")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root filesystem not read-only")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation not false")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{where}: capabilities not dropped (ALL)")
            if sc.get("capabilities", {}).get("add"):
                problems.append(f"{where}: adds capabilities")
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if "/tmp" not in mounts:
                problems.append(f"{where}: no writable /tmp (emptyDir) with a read-only root")
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(key):
                problems.append(f"{name}: {key}")
        for vol in spec.get("volumes", []):
            if "hostPath" in vol:
                problems.append(f"{name}: hostPath volume {vol['name']}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_containers_have_probes_and_resources(scenario: str) -> None:
    problems = []
    for name, _meta, spec in pod_specs(render(scenario)):
        if name == EXECUTOR:
            continue  # Spark sets executor resources; executors have no HTTP endpoint to probe
        for c in spec["containers"]:
            where = f"{name}/{c['name']}"
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c and not _one_shot(name):
                    problems.append(f"{where}: no {probe}")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(part, {}):
                        problems.append(f"{where}: no {part}.{r}")
            if c.get("image", "").endswith(":latest") or ":" not in c.get("image", ""):
                problems.append(f"{where}: image {c.get('image')!r} is not pinned")
    assert not problems, "\n".join(problems)


def test_health_endpoints_and_ports() -> None:
    rendered = render("default-values")
    expected = {
        "ingest-api": (8080, "/healthz", "/readyz"),
        "warehouse-loader": (9092, "/healthz", "/readyz"),
        "stream-processor": (9091, "/healthz", "/readyz"),
    }
    for name, _meta, spec in pod_specs(rendered):
        if _one_shot(name):
            continue
        c = spec["containers"][0]
        port, live, ready = expected[c["name"]]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        probe_port = c["livenessProbe"]["httpGet"]["port"]
        assert ports[probe_port] == port
        assert c["livenessProbe"]["httpGet"]["path"] == live
        assert c["readinessProbe"]["httpGet"]["path"] == ready


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_service_account_tokens_only_for_the_driver(scenario: str) -> None:
    rendered = render(scenario)
    for sa in rendered.of_kind("ServiceAccount"):
        assert sa.get("automountServiceAccountToken") is False, sa["metadata"]["name"]
    for name, meta, spec in pod_specs(rendered):
        component = meta["labels"]["app.kubernetes.io/component"]
        expected = component == "stream-processor"
        assert spec.get("automountServiceAccountToken") is expected, name


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_labels_are_consistent(scenario: str) -> None:
    rendered = render(scenario)
    problems = []
    for doc in rendered.docs:
        labels = doc["metadata"].get("labels", {})
        missing = [k for k in LABEL_KEYS if k not in labels]
        if missing:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: missing {missing}")
        if labels.get("app.kubernetes.io/instance") not in (None, RELEASE):
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: wrong instance label")
        if doc["kind"] not in CLUSTER_SCOPED and doc["metadata"].get("namespace") != "clickstream":
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: namespace not the release's")
    pods = {}
    for name, meta, _spec in pod_specs(rendered):
        missing = [k for k in LABEL_KEYS if k not in meta["labels"]]
        if missing:
            problems.append(f"{name} pod: missing {missing}")
        pods[name] = meta["labels"]
    for kind in ("Deployment", "StatefulSet"):
        for doc in rendered.of_kind(kind):
            selector = doc["spec"]["selector"]["matchLabels"]
            tpl = doc["spec"]["template"]["metadata"]["labels"]
            if not selector.items() <= tpl.items():
                problems.append(f"{kind}/{doc['metadata']['name']}: selector not in pod labels")

    # every Service, PDB and NetworkPolicy selects at least one pod of the release
    def selects(selector: dict[str, str]) -> bool:
        return any(selector.items() <= labels.items() for labels in pods.values())

    for svc in rendered.of_kind("Service"):
        if not selects(svc["spec"]["selector"]):
            problems.append(f"Service/{svc['metadata']['name']} selects no pod")
    for pdb in rendered.of_kind("PodDisruptionBudget"):
        if not selects(pdb["spec"]["selector"]["matchLabels"]):
            problems.append(f"PodDisruptionBudget/{pdb['metadata']['name']} selects no pod")
    for np in rendered.of_kind("NetworkPolicy"):
        if not selects(np["spec"]["podSelector"]["matchLabels"]):
            problems.append(f"NetworkPolicy/{np['metadata']['name']} selects no pod")
    for mon in rendered.of_kind("ServiceMonitor"):
        sel = mon["spec"]["selector"]["matchLabels"]
        if not any(
            sel.items() <= s["metadata"]["labels"].items() for s in rendered.of_kind("Service")
        ):
            problems.append(f"ServiceMonitor/{mon['metadata']['name']} selects no Service")
    for hpa in rendered.of_kind("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        rendered.named(ref["kind"], ref["name"])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_pod_is_covered_by_a_network_policy(scenario: str) -> None:
    rendered = render(scenario)
    policies = rendered.of_kind("NetworkPolicy")
    if not policies:
        values = CHART / "ci" / f"{scenario}.yaml"
        assert "enabled: false" in values.read_text(), "no NetworkPolicy rendered"
        return
    for name, meta, _spec in pod_specs(rendered):
        assert any(
            p["spec"]["podSelector"]["matchLabels"].items() <= meta["labels"].items()
            for p in policies
        ), f"{name} has no NetworkPolicy"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_spark_driver_role_is_exactly_what_spark_needs(scenario: str) -> None:
    rendered = render(scenario)
    assert not rendered.of_kind("ClusterRole") and not rendered.of_kind("ClusterRoleBinding")
    roles = rendered.of_kind("Role")
    assert len(roles) == 1
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in roles[0]["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == EXPECTED_DRIVER_RULES
    assert not any("*" in verbs for verbs in granted.values())
    # bound to the driver's ServiceAccount, which the driver StatefulSet uses
    binding = rendered.of_kind("RoleBinding")[0]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": roles[0]["metadata"]["name"],
    }
    [driver] = rendered.of_kind("StatefulSet")
    sa = driver["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa, "namespace": "clickstream"}
    ]
    # the executors run under another ServiceAccount, bound to nothing
    env = {
        e["name"]: e.get("value")
        for e in driver["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["PROCESSOR_EXECUTOR_SERVICE_ACCOUNT"] != sa
    executor = rendered.executor_pod_template()
    assert executor["spec"]["serviceAccountName"] == env["PROCESSOR_EXECUTOR_SERVICE_ACCOUNT"]


def test_spark_driver_is_reachable_by_executors() -> None:
    rendered = render("default-values")
    [driver] = rendered.of_kind("StatefulSet")
    svc = rendered.named("Service", driver["spec"]["serviceName"])
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"]
    env = {e["name"]: e for e in driver["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PROCESSOR_DRIVER_HOST"]["value"] == f"{svc['metadata']['name']}.clickstream.svc"
    ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    assert ports["driver-rpc"] == int(env["PROCESSOR_DRIVER_PORT"]["value"])
    assert ports["blockmanager"] == int(env["PROCESSOR_BLOCK_MANAGER_PORT"]["value"])
    assert env["PROCESSOR_SPARK_MASTER"]["value"] == "k8s://https://kubernetes.default.svc"
    assert (
        env["PROCESSOR_K8S_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    )
    assert (
        env["PROCESSOR_EXECUTOR_IMAGE"]["value"]
        == driver["spec"]["template"]["spec"]["containers"][0]["image"]
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_secrets_are_referenced_never_inlined(scenario: str, yaml_mod: Any) -> None:
    rendered = render(scenario)
    assert not rendered.of_kind("Secret"), "the chart must not create Secrets"
    values = yaml_mod.safe_load((CHART / "ci" / f"{scenario}.yaml").read_text())
    allowed = {
        values.get("ingestApi", {}).get("writeKeys", {}).get("existingSecret"),
        values.get("warehouseLoader", {}).get("warehouse", {}).get("existingSecret"),
        values.get("s3", {}).get("credentials", {}).get("existingSecret"),
        values.get("kafka", {}).get("security", {}).get("sasl", {}).get("existingSecret"),
    } - {None, ""}
    problems = []
    for name, _meta, spec in pod_specs(rendered):
        for c in _containers(spec):
            assert "envFrom" not in c or all("secretRef" not in e for e in c["envFrom"])
            for env in c.get("env", []):
                if SECRET_ENV.search(env["name"]):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if "value" in env or ref is None:
                        problems.append(f"{name}/{c['name']}: {env['name']} not from a Secret")
                    elif ref["name"] not in allowed:
                        problems.append(
                            f"{name}/{c['name']}: {env['name']} from unexpected "
                            f"Secret {ref['name']}"
                        )
    assert not problems, "\n".join(problems)
    # every credential a pod needs is there
    envs = {
        e["name"]
        for _n, _m, spec in pod_specs(rendered)
        for c in _containers(spec)
        for e in c.get("env", [])
    }
    assert {"INGEST_WRITE_KEYS", "WAREHOUSE_DSN"} <= envs


def test_default_values_hold_no_credentials(yaml_mod: Any) -> None:
    values = yaml_mod.safe_load((CHART / "values.yaml").read_text())
    assert values["ingestApi"]["writeKeys"]["existingSecret"] == ""
    assert values["warehouseLoader"]["warehouse"]["existingSecret"] == ""
    assert values["s3"]["credentials"]["existingSecret"] == ""
    text = (CHART / "values.yaml").read_text()
    assert not re.search(r"(?i)(password|secretAccessKey|token)\s*:\s*\S*[A-Za-z0-9]{8,}", text)
    assert "AKIA" not in text


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_container_env_names_are_contract_names(scenario: str) -> None:
    """Every environment variable the chart sets is in docs/contracts.md or docs/kubernetes.md."""
    known = contract_env_names()
    unknown = set()
    for name, _meta, spec in pod_specs(render(scenario)):
        if name == EXECUTOR:
            continue
        for c in spec["containers"]:
            unknown |= {e["name"] for e in c.get("env", [])} - known
    assert not unknown, f"env vars named nowhere in docs: {sorted(unknown)}"


def test_aws_scenario_uses_irsa_and_no_static_keys() -> None:
    rendered = render("aws-redshift-sqs-values")
    for sa in rendered.of_kind("ServiceAccount"):
        comp = sa["metadata"]["labels"]["app.kubernetes.io/component"]
        if comp != "ingest-api":
            assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith(
                "arn:aws:iam::"
            )
    envs = {
        e["name"]: e
        for _n, _m, spec in pod_specs(rendered)
        for c in spec["containers"]
        for e in c.get("env", [])
    }
    assert "AWS_ACCESS_KEY_ID" not in envs and "S3_ENDPOINT_URL" not in envs
    assert envs["LOADER_NOTIFICATIONS_SOURCE"]["value"] == "sqs"
    assert envs["LOADER_SQS_QUEUE_URL"]["value"].startswith("https://sqs.")
    assert envs["WAREHOUSE_DIALECT"]["value"] == "redshift"
    assert envs["LOADER_REDSHIFT_IAM_ROLE"]["value"].startswith("arn:aws:iam::")
