"""A real Kubernetes control plane on loopback for the deployment tests.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are the upstream binaries
(built by local/kubernetes/control-plane.sh); kwok stands in for the kubelets: it registers a
fake node and moves the pods scheduled onto it to Running/Ready with fake IPs. Nothing runs
in those pods, so never send traffic to a pod IP: what this proves is everything the API
server, its admission chain (RBAC, ValidatingAdmissionPolicy, Pod Security, server-side
validation) and the controllers (Deployment, StatefulSet, garbage collector, disruption,
endpoints) do with the objects.

Every part listens on a free port under a scratch directory and is stopped by `stop()`.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clickstream_local.config import free_ports
from tests.conftest import wait_for

ADMIN_TOKEN_USER = "clickstream-admin"
NODE_NAME = "kwok-node-0"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(pki: Path) -> None:
    """A CA, the API server's serving certificate (127.0.0.1, localhost, kubernetes.default)
    and the service-account signing key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-days", "2", "-subj", "/CN=clickstream-test-ca",
        "-out", "ca.crt", cwd=pki,
    )  # fmt: skip
    _openssl("genrsa", "-out", "apiserver.key", "2048", cwd=pki)
    _openssl(
        "req", "-new", "-key", "apiserver.key", "-subj", "/CN=kube-apiserver",
        "-out", "apiserver.csr", cwd=pki,
    )  # fmt: skip
    (pki / "san.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "apiserver.crt", cwd=pki,
    )  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def kubeconfig(server: str, ca_file: Path, token: str, user: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "test", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
        "current-context": "test",
    }


@dataclass
class ControlPlane:
    """Start with `start()`; `kubeconfig` is the admin's (group system:masters)."""

    bin_dir: Path
    stages_dir: Path
    work: Path
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def ca_file(self) -> Path:
        return self.work / "pki" / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        return self.work / "admin.kubeconfig"

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.work / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.work, start_new_session=True
        )

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.work / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self.log_tail(name)}")

    def _healthy(self, path: str) -> bool:
        self._check_alive()
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        req = urllib.request.Request(
            self.server + path, headers={"Authorization": f"Bearer {self.admin_token}"}
        )
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> ControlPlane:
        b = self.bin_dir
        self.work.mkdir(parents=True, exist_ok=True)
        pki = self.work / "pki"
        make_pki(pki)
        names = ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kwok")
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.admin_token = os.urandom(16).hex()
        (self.work / "tokens.csv").write_text(
            f'{self.admin_token},{ADMIN_TOKEN_USER},{ADMIN_TOKEN_USER},"system:masters"\n'
        )
        self.kubeconfig.write_text(
            json.dumps(kubeconfig(self.server, self.ca_file, self.admin_token, ADMIN_TOKEN_USER))
        )
        etcd, peer = self.ports["etcd"], self.ports["etcd-peer"]
        self._spawn(
            "etcd",
            [
                str(b / "etcd"),
                "--data-dir", str(self.work / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{etcd}",
                "--advertise-client-urls", f"http://127.0.0.1:{etcd}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level", "warn",
            ],
        )  # fmt: skip
        self._spawn(
            "kube-apiserver",
            [
                str(b / "kube-apiserver"),
                "--etcd-servers", f"http://127.0.0.1:{etcd}",
                "--bind-address", "127.0.0.1",
                "--advertise-address", "127.0.0.1",
                "--secure-port", str(self.ports["apiserver"]),
                "--tls-cert-file", str(pki / "apiserver.crt"),
                "--tls-private-key-file", str(pki / "apiserver.key"),
                "--client-ca-file", str(pki / "ca.crt"),
                "--token-auth-file", str(self.work / "tokens.csv"),
                "--authorization-mode", "RBAC",
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file", str(pki / "sa.pub"),
                "--service-account-signing-key-file", str(pki / "sa.key"),
                "--service-cluster-ip-range", "10.96.0.0/16",
                "--cert-dir", str(self.work / "apiserver-certs"),
                "--enable-priority-and-fairness=false",
                "--profiling=false",
            ],
        )  # fmt: skip
        wait_for(lambda: self._healthy("/readyz"), 120, what="kube-apiserver /readyz")
        self._spawn(
            "kube-controller-manager",
            [
                str(b / "kube-controller-manager"),
                "--kubeconfig", str(self.kubeconfig),
                "--authentication-kubeconfig", str(self.kubeconfig),
                "--authorization-kubeconfig", str(self.kubeconfig),
                "--bind-address", "127.0.0.1",
                "--secure-port", str(self.ports["kcm"]),
                "--service-account-private-key-file", str(pki / "sa.key"),
                "--root-ca-file", str(pki / "ca.crt"),
                "--leader-elect=false",
                "--controllers", "*",
                # Pods get their IPs from kwok; no cloud, no node IPAM.
                "--allocate-node-cidrs=false",
            ],
        )  # fmt: skip
        self._spawn(
            "kube-scheduler",
            [
                str(b / "kube-scheduler"),
                "--kubeconfig", str(self.kubeconfig),
                "--authentication-kubeconfig", str(self.kubeconfig),
                "--authorization-kubeconfig", str(self.kubeconfig),
                "--bind-address", "127.0.0.1",
                "--secure-port", str(self.ports["scheduler"]),
                "--leader-elect=false",
            ],
        )  # fmt: skip
        self._spawn(
            "kwok",
            [
                str(b / "kwok"),
                "--kubeconfig", str(self.kubeconfig),
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
                "--config", str(self.stages_dir / "node-fast.yaml"),
                "--config", str(self.stages_dir / "node-heartbeat.yaml"),
                "--config", str(self.stages_dir / "pod-fast.yaml"),
                "--server-address", f"127.0.0.1:{self.ports['kwok']}",
                # kwok renews the node's Lease, the heartbeat the node controller watches;
                # without it the node turns NotReady after 40 s and its pods unready.
                "--node-lease-duration-seconds", "40",
            ],
        )  # fmt: skip
        self.kubectl("apply", "-f", "-", stdin=json.dumps(FAKE_NODE))
        wait_for(self._node_ready, 60, what=f"node {NODE_NAME} Ready (kwok)")
        return self

    def _node_ready(self) -> bool:
        self._check_alive()
        out = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if out.returncode != 0:
            return False
        conditions = json.loads(out.stdout)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def kubectl(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        kubeconfig_path: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.bin_dir / "kubectl"), "--kubeconfig", str(kubeconfig_path or self.kubeconfig),
             *args],
            input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
        return proc

    def get(self, *args: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return out

    def token_kubeconfig(self, namespace: str, service_account: str) -> Path:
        """A kubeconfig that authenticates as a ServiceAccount (a TokenRequest token)."""
        token = self.kubectl(
            "-n", namespace, "create", "token", service_account, "--duration", "1h"
        ).stdout.strip()
        user = f"system:serviceaccount:{namespace}:{service_account}"
        path = self.work / f"{namespace}-{service_account}.kubeconfig"
        config = kubeconfig(self.server, self.ca_file, token, user)
        config["contexts"][0]["context"]["namespace"] = namespace
        path.write_text(json.dumps(config))
        return path

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


# A node that kwok manages (annotation), with room for every pod of the chart.
FAKE_NODE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": NODE_NAME,
        "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        "labels": {
            "kubernetes.io/hostname": NODE_NAME,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": "zone-a",
            "type": "kwok",
        },
    },
}
