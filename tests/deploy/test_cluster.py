"""The chart against a real Kubernetes API server (tests/deploy/controlplane.py).

What the API server, its admission chain and the controllers decide is real here: server-side
validation (strict, CRD schemas included), Pod Security `restricted`, RBAC, the
ValidatingAdmissionPolicy, Deployments/StatefulSets rolling out, the disruption and HPA
controllers, EndpointSlices. kwok plays the kubelets, so pods become Running and Ready with
fake IPs and nothing runs in them: no traffic goes to a pod.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from controlplane import ControlPlane
from deployhelpers import CHART, SCENARIOS, find_tool, helm_env, load_yaml_docs, run

from clickstream_local.config import free_ports
from tests.conftest import wait_for

pytestmark = pytest.mark.kubernetes

RELEASE = "cs"
DRIVER_SA = f"{RELEASE}-clickstream-stream-processor"
EXECUTOR_SA = f"{RELEASE}-clickstream-spark-executor"
COMPONENT = "app.kubernetes.io/component"


def helm_k8s(
    cluster: ControlPlane, *args: str, timeout: float = 400
) -> subprocess.CompletedProcess[str]:
    env = helm_env() | {"KUBECONFIG": str(cluster.kubeconfig)}
    return run([find_tool("helm"), *args], env=env, timeout=timeout)


def scenario_secrets(scenario: str) -> dict[str, dict[str, str]]:
    """The Secrets a scenario names, with placeholder values (the chart only references them)."""
    text = (CHART / "ci" / f"{scenario}.yaml").read_text()
    values = load_yaml_docs(text)[0]
    secrets: dict[str, dict[str, str]] = {}
    write_keys = values.get("ingestApi", {}).get("writeKeys", {})
    if write_keys.get("existingSecret"):
        secrets[write_keys["existingSecret"]] = {
            write_keys.get("key", "INGEST_WRITE_KEYS"): '{"test-key": "web"}'
        }
    warehouse = values.get("warehouseLoader", {}).get("warehouse", {})
    if warehouse.get("existingSecret"):
        secrets[warehouse["existingSecret"]] = {
            warehouse.get("dsnKey", "WAREHOUSE_DSN"): "postgresql://u:p@warehouse:5432/db"
        }
    s3 = values.get("s3", {}).get("credentials", {})
    if s3.get("existingSecret"):
        secrets[s3["existingSecret"]] = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    security = values.get("kafka", {}).get("security", {})
    sasl, tls = security.get("sasl", {}), security.get("tls", {})
    if sasl.get("existingSecret"):
        secrets[sasl["existingSecret"]] = {
            sasl.get("usernameKey", "username"): "clickstream",
            sasl.get("passwordKey", "password"): "placeholder",
        }
    if tls.get("caSecret"):
        secrets[tls["caSecret"]] = {tls.get("caKey", "ca.crt"): "placeholder"}
    return secrets


def new_namespace(cluster: ControlPlane, name: str) -> str:
    """A namespace that enforces Pod Security `restricted`, as a hardened cluster would."""
    cluster.kubectl(
        "apply", "-f", "-",
        stdin=json.dumps({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            }},
        }),
    )  # fmt: skip
    return name


def install(cluster: ControlPlane, scenario: str, namespace: str, *extra: str) -> None:
    new_namespace(cluster, namespace)
    for name, data in scenario_secrets(scenario).items():
        args = [f"--from-literal={k}={v}" for k, v in data.items()]
        cluster.kubectl("-n", namespace, "create", "secret", "generic", name, *args)
    done = threading.Event()
    lb = threading.Thread(target=play_load_balancer_controller, args=(cluster, namespace, done))
    lb.start()
    try:
        proc = helm_k8s(
            cluster,
            "install", RELEASE, str(CHART), "-n", namespace,
            "-f", str(CHART / "ci" / f"{scenario}.yaml"),
            "--wait", "--timeout", "3m", *extra,
        )  # fmt: skip
    finally:
        done.set()
        lb.join()
    assert proc.returncode == 0, proc.stdout + proc.stderr + diagnose(cluster, namespace)


def play_load_balancer_controller(
    cluster: ControlPlane, namespace: str, done: threading.Event
) -> None:
    """There is no cloud here to provision load balancers, and `helm --wait` waits for a
    LoadBalancer Service's address: give each one an address, as a cloud controller would."""
    while not done.wait(1.0):
        services = cluster.kubectl("get", "services", "-n", namespace, "-o", "json", check=False)
        if services.returncode != 0:
            continue
        for svc in json.loads(services.stdout)["items"]:
            if svc["spec"]["type"] == "LoadBalancer" and not svc["status"]["loadBalancer"]:
                patch = {"status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}}}
                cluster.kubectl(
                    "patch", "service", svc["metadata"]["name"], "-n", namespace,
                    "--subresource=status", "--type=merge", "-p", json.dumps(patch), check=False,
                )  # fmt: skip


def diagnose(cluster: ControlPlane, namespace: str) -> str:
    """What the workloads and the event stream of a namespace say (for failure messages)."""
    parts = [
        cluster.kubectl(
            "get", "deploy,sts,rs,pods", "-n", namespace, "-o", "wide", check=False
        ).stdout,
        cluster.kubectl(
            "get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False
        ).stdout[-4000:],
    ]
    return "\n" + "\n".join(parts)


def status(cluster: ControlPlane, namespace: str) -> dict[str, Any]:
    proc = helm_k8s(cluster, "status", RELEASE, "-n", namespace, "-o", "json")
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def manifest(cluster: ControlPlane, namespace: str, what: str = "manifest") -> str:
    proc = helm_k8s(cluster, "get", what, RELEASE, "-n", namespace)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def pods(cluster: ControlPlane, namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get("pods", "-n", namespace, "-l", selector)["items"]
    return items


def selector_of(match_labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


@pytest.fixture(scope="module")
def default_release(cluster: ControlPlane) -> str:
    """The default-values scenario, installed once for the tests that look at it."""
    namespace = "clickstream"
    install(cluster, "default-values", namespace)
    return namespace


# --- install, upgrade, rollback, hooks ------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_installs_and_is_accepted_strictly(
    cluster: ControlPlane, scenario: str
) -> None:
    namespace = f"ci-{scenario}"[:63]
    install(cluster, scenario, namespace)
    info = status(cluster, namespace)
    assert info["info"]["status"] == "deployed"
    # Strict server-side validation of every object (unknown or duplicate fields rejected,
    # CRD schemas for the monitoring objects), as `kubectl apply --server-side` would do.
    docs = load_yaml_docs(manifest(cluster, namespace))
    proc = cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "--validate=strict",
        "--field-manager=helm", "--force-conflicts", "-f", "-",
        stdin="\n---\n".join(json.dumps(d) for d in docs), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Every object is there, and every workload rolled out (helm --wait) onto the kwok node.
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        scope = ["-n", namespace] if doc["metadata"].get("namespace") else []
        cluster.kubectl("get", kind, name, *scope)
    for item in cluster.get("pods", "-n", namespace)["items"]:
        assert item["status"]["phase"] == "Running", item["metadata"]["name"]
        assert item["spec"]["nodeName"], item["metadata"]["name"]
    # The driver's admission policy admits executors made from this scenario's template (with
    # its S3 keys and Kafka CA Secret, when it has them).
    pod = executor_pod_from_template(cluster, namespace, "executor-of-the-template")
    proc = _create_as(cluster, cluster.token_kubeconfig(namespace, DRIVER_SA), pod)
    assert proc.returncode == 0, proc.stderr
    cluster.kubectl("delete", "pod", "executor-of-the-template", "-n", namespace, "--timeout=60s")


def test_upgrade_with_changed_values_then_rollback(cluster: ControlPlane) -> None:
    namespace = "upgrade"
    install(cluster, "default-values", namespace)
    deployment = f"{RELEASE}-clickstream-ingest-api"
    proc = helm_k8s(
        cluster,
        "upgrade", RELEASE, str(CHART), "-n", namespace, "--reuse-values",
        "--set", "ingestApi.autoscaling.enabled=false",
        "--set", "ingestApi.replicaCount=3",
        "--set", "logLevel=DEBUG",
        "--wait", "--timeout", "5m",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert status(cluster, namespace)["version"] == 2
    # The new template rolls out with a surge: the old ReplicaSet's pods still count as ready
    # for a moment after helm's --wait returns.
    dep = wait_for(
        lambda: (lambda d: d if d["status"].get("readyReplicas") == 3 else None)(
            cluster.get("deployment", deployment, "-n", namespace)
        ),
        120,
        what="3 ready collectors after the upgrade",
    )
    assert dep["spec"]["replicas"] == 3
    env = {
        e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["LOG_LEVEL"] == "DEBUG"
    hpas = cluster.get("hpa", "-n", namespace)["items"]
    assert not hpas, "autoscaling was switched off"

    proc = helm_k8s(cluster, "rollback", RELEASE, "1", "-n", namespace, "--wait", "--timeout", "5m")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = status(cluster, namespace)
    assert info["version"] == 3 and info["info"]["status"] == "deployed"
    dep = cluster.get("deployment", deployment, "-n", namespace)
    env = {
        e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["LOG_LEVEL"] == "INFO"
    [hpa] = cluster.get("hpa", "-n", namespace)["items"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment
    wait_for(
        lambda: len(pods(cluster, namespace, f"{COMPONENT}=ingest-api")) == 2,
        120,
        what="the HPA's minimum of 2 collectors after the rollback",
    )
    history = json.loads(
        helm_k8s(cluster, "history", RELEASE, "-n", namespace, "-o", "json").stdout
    )
    assert [h["status"] for h in history] == ["superseded", "superseded", "deployed"]


def test_helm_test_hook_is_rendered_and_accepted(
    cluster: ControlPlane, default_release: str
) -> None:
    hooks = load_yaml_docs(manifest(cluster, default_release, "hooks"))
    [pod] = [h for h in hooks if h["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    assert pod["kind"] == "Pod" and pod["spec"]["restartPolicy"] == "Never"
    container = pod["spec"]["containers"][0]
    assert container["image"] == f"clickstream/ingest-api:{_app_version()}"
    env = {e["name"]: e for e in container["env"]}
    assert (
        env["COLLECTOR_URL"]["value"]
        == f"http://{RELEASE}-clickstream-ingest-api.{default_release}.svc:80"
    )
    assert env["INGEST_WRITE_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "clickstream-write-keys"
    # The API server (Pod Security restricted included) accepts it as it stands.
    proc = cluster.kubectl(
        "create", "--dry-run=server", "--validate=strict", "-n", default_release, "-f", "-",
        stdin=json.dumps(pod), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _app_version() -> str:
    chart = load_yaml_docs((CHART / "Chart.yaml").read_text())[0]
    return str(chart["appVersion"])


# --- least privilege of the Spark driver ----------------------------------------------------


def executor_pod_from_template(cluster: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    """A pod as Spark makes it from the chart's executor template (name, image, Spark labels)."""
    cm = cluster.get("configmap", f"{RELEASE}-clickstream-executor-pod-template", "-n", namespace)
    pod: dict[str, Any] = load_yaml_docs(cm["data"]["executor-pod-template.yaml"])[0]
    sts = cluster.get("statefulset", DRIVER_SA, "-n", namespace)
    env = {
        e["name"]: e.get("value") for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    pod["metadata"]["name"] = name
    pod["metadata"]["labels"] |= {"spark-role": "executor", "spark-app-selector": "spark-test"}
    pod["spec"]["containers"][0]["image"] = env["PROCESSOR_EXECUTOR_IMAGE"]
    pod["spec"]["containers"][0]["args"] = ["executor"]
    return pod


def test_driver_role_denies_what_spark_does_not_need(
    cluster: ControlPlane, default_release: str
) -> None:
    ns = default_release
    driver = cluster.token_kubeconfig(ns, DRIVER_SA)
    executor = cluster.token_kubeconfig(ns, EXECUTOR_SA)

    def can_i(config: Path, *what: str) -> str:
        proc = cluster.kubectl("auth", "can-i", *what, kubeconfig_path=config, check=False)
        return proc.stdout.strip()

    assert can_i(driver, "create", "pods") == "yes"
    assert can_i(driver, "create", "configmaps") == "yes"
    for denied in (
        ("get", "secrets"),
        ("list", "secrets"),
        ("create", "services"),
        ("create", "deployments.apps"),
        ("create", "pods", "-n", "default"),
        ("list", "pods", "--all-namespaces"),
        ("create", "rolebindings.rbac.authorization.k8s.io"),
    ):
        assert can_i(driver, *denied) == "no", denied
    for denied in (("list", "pods"), ("get", "configmaps"), ("get", "secrets")):
        assert can_i(executor, *denied) == "no", denied
    proc = cluster.kubectl("get", "secrets", kubeconfig_path=driver, check=False)
    assert proc.returncode != 0 and "forbidden" in proc.stderr.lower(), proc.stderr


def _create_as(
    cluster: ControlPlane, config: Path, pod: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "create", "-f", "-", stdin=json.dumps(pod), kubeconfig_path=config, check=False
    )


def test_admission_policy_admits_only_executors_from_the_template(
    cluster: ControlPlane, default_release: str
) -> None:
    ns = default_release
    driver = cluster.token_kubeconfig(ns, DRIVER_SA)
    good = executor_pod_from_template(cluster, ns, "exec-from-template")
    proc = _create_as(cluster, driver, good)
    assert proc.returncode == 0, proc.stderr
    denials = {
        "not an executor": lambda p: p["metadata"]["labels"].pop("spark-role"),
        "another image": lambda p: p["spec"]["containers"][0].update(image="busybox:1.36"),
        "the driver's ServiceAccount": lambda p: p["spec"].update(serviceAccountName=DRIVER_SA),
        "a token": lambda p: p["spec"].update(automountServiceAccountToken=True),
        "a Secret in the environment": lambda p: p["spec"]["containers"][0]["env"].append(
            {
                "name": "X",
                "valueFrom": {
                    "secretKeyRef": {"name": "clickstream-warehouse", "key": "WAREHOUSE_DSN"}
                },
            }
        ),
        "a Secret volume": lambda p: p["spec"]["volumes"].append(
            {"name": "s", "secret": {"secretName": "clickstream-warehouse"}}
        ),
    }
    for i, (what, change) in enumerate(denials.items()):
        pod = executor_pod_from_template(cluster, ns, f"exec-bad-{i}")
        change(pod)
        proc = _create_as(cluster, driver, pod)
        assert proc.returncode != 0, f"{what}: admitted"
        assert "ValidatingAdmissionPolicy" in proc.stderr and "denied" in proc.stderr, (
            what,
            proc.stderr,
        )
    # The driver may delete its executors, not the collector.
    [collector, *_] = pods(cluster, ns, f"{COMPONENT}=ingest-api")
    proc = cluster.kubectl(
        "delete",
        "pod",
        collector["metadata"]["name"],
        "--wait=false",
        kubeconfig_path=driver,
        check=False,
    )
    assert proc.returncode != 0 and "ValidatingAdmissionPolicy" in proc.stderr, proc.stderr
    cluster.kubectl("delete", "pod", "exec-from-template", "--timeout=60s", kubeconfig_path=driver)


# --- NetworkPolicies, PodDisruptionBudget, HPA, Services select what they should -------------


def test_policies_budgets_and_autoscaler_select_their_pods(
    cluster: ControlPlane, default_release: str
) -> None:
    ns = default_release
    executor = executor_pod_from_template(cluster, ns, "exec-for-selectors")
    _create_as(cluster, cluster.token_kubeconfig(ns, DRIVER_SA), executor)
    wait_for(lambda: pods(cluster, ns, "spark-role=executor"), 60, what="the executor pod")
    expected = {
        f"{RELEASE}-clickstream-ingest-api": "ingest-api",
        f"{RELEASE}-clickstream-warehouse-loader": "warehouse-loader",
        f"{RELEASE}-clickstream-stream-processor": "stream-processor",
        f"{RELEASE}-clickstream-spark-executor": "spark-executor",
        f"{RELEASE}-clickstream-helm-test": "helm-test",
    }
    policies = cluster.get("networkpolicy", "-n", ns)["items"]
    assert {p["metadata"]["name"] for p in policies} == set(expected)
    for policy in policies:
        selected = pods(cluster, ns, selector_of(policy["spec"]["podSelector"]["matchLabels"]))
        components = {p["metadata"]["labels"][COMPONENT] for p in selected}
        want = expected[policy["metadata"]["name"]]
        # The helm test pod exists only while `helm test` runs.
        assert components == ({want} if want != "helm-test" else set()), want
    # The driver admits executors on its RPC ports: the peer selector matches the executor.
    [driver_policy] = [p for p in policies if p["metadata"]["name"].endswith("stream-processor")]
    peers = [
        peer["podSelector"]["matchLabels"] for peer in driver_policy["spec"]["ingress"][0]["from"]
    ]
    assert any(pods(cluster, ns, selector_of(peer)) for peer in peers)

    # The Deployment starts with one replica; the HPA raises it to its minimum of 2.
    wait_for(
        lambda: len(pods(cluster, ns, f"{COMPONENT}=ingest-api")) == 2, 90, what="two collectors"
    )

    def budget() -> dict[str, Any] | None:
        [pdb] = cluster.get("pdb", "-n", ns)["items"]
        st = pdb.get("status", {})
        return st if st.get("expectedPods") == 2 and st.get("currentHealthy") == 2 else None

    st = wait_for(budget, 60, what="the disruption controller to count the collectors")
    assert st["disruptionsAllowed"] == 1  # minAvailable 1 of 2

    def able_to_scale() -> dict[str, Any] | None:
        [hpa] = cluster.get("hpa", "-n", ns)["items"]
        conditions = {c["type"]: c for c in hpa.get("status", {}).get("conditions", [])}
        ok = conditions.get("AbleToScale", {}).get("status") == "True"
        # No metrics server here: it holds the Deployment at minReplicas.
        return hpa if ok and hpa["status"].get("currentReplicas") == 2 else None

    wait_for(able_to_scale, 90, what="the HPA controller to scale its target to minReplicas")

    for svc in cluster.get("services", "-n", ns)["items"]:
        name = svc["metadata"]["name"]
        selected = pods(cluster, ns, selector_of(svc["spec"]["selector"]))

        def endpoints(name: str = name) -> int:
            slices = cluster.get(
                "endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={name}"
            )
            return sum(len(s.get("endpoints") or []) for s in slices["items"])

        wait_for(lambda: endpoints() == len(selected) > 0, 60, what=f"endpoints of Service {name}")
    cluster.kubectl("delete", "pod", "exec-for-selectors", "-n", ns, "--timeout=60s")


# --- the Spark driver path ------------------------------------------------------------------


def _driver_env(cluster: ControlPlane, ns: str, tmp: Path) -> dict[str, str]:
    """The driver container's environment as the StatefulSet gives it (downward API resolved),
    pointed at this API server with the driver ServiceAccount's token."""
    sts = cluster.get("statefulset", DRIVER_SA, "-n", ns)
    container = sts["spec"]["template"]["spec"]["containers"][0]
    pod_name = f"{DRIVER_SA}-0"
    env: dict[str, str] = {}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        elif e["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[e["name"]] = ns
        elif e["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[e["name"]] = pod_name
    cm = cluster.get("configmap", f"{RELEASE}-clickstream-executor-pod-template", "-n", ns)
    template = tmp / "executor-pod-template.yaml"
    template.write_text(cm["data"]["executor-pod-template.yaml"])
    kubeconfig = json.loads(cluster.token_kubeconfig(ns, DRIVER_SA).read_text())
    token = tmp / "driver.token"
    token.write_text(kubeconfig["users"][0]["user"]["token"])
    local = tmp / "spark-local"
    local.mkdir()
    ports = [str(p) for p in free_ports(2)]
    env |= {
        # Outside the cluster: this API server, the SA token and CA as files (client mode keys).
        "PROCESSOR_SPARK_MASTER": f"k8s://{cluster.server}",
        "PROCESSOR_EXECUTOR_POD_TEMPLATE": str(template),
        "PROCESSOR_DRIVER_PORT": ports[0],
        "PROCESSOR_BLOCK_MANAGER_PORT": ports[1],
        "PROCESSOR_DRIVER_MEMORY": "512m",
        "SPARK_LOCAL_DIRS": str(local),
        "PROCESSOR_SPARK_CONF": json.dumps(
            json.loads(env.get("PROCESSOR_SPARK_CONF", "{}"))
            | {
                "spark.kubernetes.authenticate.oauthTokenFile": str(token),
                "spark.kubernetes.authenticate.caCertFile": str(cluster.ca_file),
                "spark.ui.enabled": "false",
            }
        ),
    }
    return env


DRIVER_SCRIPT = """
import sys
import threading
from stream_processor.config import Settings
from stream_processor.spark_setup import build_session
spark = build_session(Settings())
print("session started", spark.sparkContext.applicationId, flush=True)
sys.stdin.readline()
spark.stop()
print("session stopped", flush=True)
"""


@pytest.mark.spark
def test_spark_driver_creates_its_executors_through_rbac_and_the_policy(
    cluster: ControlPlane, default_release: str, tmp_path: Path
) -> None:
    """The job's own Spark setup (stream_processor.spark_setup.build_session) with the chart's
    driver settings and the driver ServiceAccount's token: Spark's Kubernetes backend asks
    this API server for executor pods from the chart's template, through the Role and the
    ValidatingAdmissionPolicy, and removes them when the session stops."""
    ns = default_release
    driver_pod = cluster.get("pod", f"{DRIVER_SA}-0", "-n", ns)
    env = os.environ | _driver_env(cluster, ns, tmp_path)
    log = (tmp_path / "driver.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER_SCRIPT],
        env=env, cwd=tmp_path, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        executors = wait_for(
            lambda: (lambda found: found if len(found) == 2 else None)(
                pods(cluster, ns, "spark-role=executor,spark-app-selector!=spark-test")
            ),
            240,
            what="two executor pods created by the driver",
        )
        for pod in executors:
            meta, spec = pod["metadata"], pod["spec"]
            assert meta["labels"][COMPONENT] == "spark-executor"
            assert spec["serviceAccountName"] == EXECUTOR_SA
            assert spec["automountServiceAccountToken"] is False
            assert spec["securityContext"]["runAsNonRoot"] is True
            [owner] = meta.get("ownerReferences") or [None]
            assert owner is not None, (meta, (tmp_path / "driver.log").read_text()[-3000:])
            assert owner["kind"] == "Pod" and owner["uid"] == driver_pod["metadata"]["uid"]
            container = spec["containers"][0]
            assert container["image"] == env["PROCESSOR_EXECUTOR_IMAGE"]
            names = {e["name"] for e in container["env"]}
            assert "_SPARK_AUTH_SECRET" in names  # spark.authenticate: a secret per application
        # The executors' Spark conf map, created by the driver through its Role.
        # The executors' Spark conf map, created by the driver through its Role right after it
        # asked for the executors, and owned by the driver pod.
        app_id = executors[0]["metadata"]["labels"]["spark-app-selector"]

        def conf_map() -> list[dict[str, Any]]:
            maps = cluster.get("configmaps", "-n", ns, "-l", f"spark-app-selector={app_id}")
            return [
                m for m in maps["items"] if m["metadata"]["labels"].get("spark-role") == "executor"
            ]

        [conf] = wait_for(conf_map, 60, what="the executors' conf map")
        assert conf["metadata"]["ownerReferences"][0]["uid"] == driver_pod["metadata"]["uid"]
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=120) == 0
        wait_for(
            lambda: not pods(cluster, ns, "spark-role=executor,spark-app-selector!=spark-test"),
            120,
            what="the driver to delete its executors on stop",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        if sys.exc_info()[0] is not None:
            print((tmp_path / "driver.log").read_text()[-6000:])


def test_garbage_collector_removes_executors_with_their_driver(
    cluster: ControlPlane, tmp_path: Path
) -> None:
    """Executors are owned by the driver pod: when the driver pod goes (StatefulSet restart,
    node loss), the garbage collector removes them, so no orphan keeps running."""
    ns = "gc"
    install(cluster, "minimal-values", ns)
    driver_pod = cluster.get("pod", f"{DRIVER_SA}-0", "-n", ns)
    pod = executor_pod_from_template(cluster, ns, "orphan-candidate")
    pod["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "Pod", "name": driver_pod["metadata"]["name"],
         "uid": driver_pod["metadata"]["uid"], "controller": True}
    ]  # fmt: skip
    proc = _create_as(cluster, cluster.token_kubeconfig(ns, DRIVER_SA), pod)
    assert proc.returncode == 0, proc.stderr
    cluster.kubectl("delete", "pod", driver_pod["metadata"]["name"], "-n", ns, "--wait=false")
    wait_for(
        lambda: not pods(cluster, ns, "spark-role=executor"),
        120,
        what="the garbage collector to remove the executor",
    )
    # ...and the StatefulSet brings a new driver.
    wait_for(
        lambda: any(
            p["metadata"]["uid"] != driver_pod["metadata"]["uid"]
            for p in pods(cluster, ns, f"{COMPONENT}=stream-processor")
        ),
        120,
        what="a new driver pod",
    )


def test_admission_policy_compiles_without_warnings(
    cluster: ControlPlane, default_release: str
) -> None:
    [policy] = [
        p
        for p in cluster.get("validatingadmissionpolicies")["items"]
        if p["metadata"]["name"].startswith(f"{default_release}-")
    ]

    def checked() -> dict[str, Any] | None:
        got = cluster.get("validatingadmissionpolicy", policy["metadata"]["name"])
        return got if got.get("status", {}).get("typeChecking") is not None else None

    got = wait_for(checked, 60, what="the API server's type check of the policy")
    assert not got["status"]["typeChecking"].get("expressionWarnings"), got["status"]


def test_control_plane_versions(cluster: ControlPlane) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.35.4"
