"""The service images: hadolint, the layout rules of the issue, and the stream-processor's
executor entrypoint (run with a stand-in java)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from deployhelpers import DOCKERFILES, REPO, find_tool, run
from service_dockerfiles import IMAGES, stale

SERVICES = {
    "ingest-api": "ingest_api",
    "stream-processor": "stream_processor",
    "warehouse-loader": "warehouse_loader",
    "anomaly-detector": "anomaly_detector",
    "recommender": "recommender",
}
ENTRYPOINT = REPO / "services" / "stream-processor" / "docker-entrypoint.sh"


def _stages(path: Path) -> list[list[str]]:
    """Instructions (continuation lines joined) grouped by FROM."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_the_python_services_dockerfiles_are_made_from_one_template() -> None:
    """Four images build the same way: one template, each Dockerfile checked against it."""
    assert {image.service for image in IMAGES} == set(SERVICES) - {"stream-processor"}
    assert stale() == [], "run python tests/deploy/service_dockerfiles.py --write"


def test_every_service_has_a_dockerfile() -> None:
    assert {p.parent.name for p in DOCKERFILES} == set(SERVICES)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint(dockerfile: Path) -> None:
    hadolint = find_tool("hadolint", python_scripts=True)
    proc = run([hadolint, "--failure-threshold", "info", str(dockerfile)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_image_layout(dockerfile: Path) -> None:
    service = dockerfile.parent.name
    stages = _stages(dockerfile)
    assert len(stages) >= 3, "multi-stage build expected"
    for stage in stages:
        image = stage[0].split()[1]
        assert re.search(r":[0-9][^:]*$", image), f"base image {image} not pinned to a version"
        assert not image.endswith(":latest")
    runtime = stages[-1]
    assert runtime[0].split()[1].startswith("python:3.11."), (
        "runtime must be the pinned python slim"
    )
    assert "slim" in runtime[0]
    joined = "\n".join(runtime)
    # non-root numeric user, exec-form entrypoint under tini
    users = [i for i in runtime if i.upper().startswith("USER ")]
    assert users and re.fullmatch(r"USER \d+:\d+", users[-1]) and not users[-1].startswith("USER 0")
    entry = [i for i in runtime if i.upper().startswith("ENTRYPOINT ")]
    assert entry and entry[-1].split(None, 1)[1].startswith('["/usr/bin/tini"')
    cmd = [i for i in runtime if i.upper().startswith("CMD ")][-1]
    assert f'"-m", "{SERVICES[service]}"' in cmd
    # nothing that builds in the final stage
    for banned in ("uv sync", "pip install", "apt-get install", "mvn ", "gcc", "build-essential"):
        assert banned not in joined, f"{banned!r} in the runtime stage"
    assert "COPY --from=builder /opt/venv /opt/venv" in joined
    # dependencies in their own layer, before the sources
    builder = next(s for s in stages if "AS builder" in s[0])
    text = "\n".join(builder)
    deps = text.index("--no-install-workspace")
    sources = text.index(f"COPY services/{service}/")
    assert deps < sources
    assert (
        f"uv sync --frozen --no-dev --no-editable --package {service} --no-install-workspace"
        in text
    )
    assert re.search(r"pip install --no-cache-dir uv==\d", text)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_copied_paths_exist_in_the_build_context(dockerfile: Path) -> None:
    for stage in _stages(dockerfile):
        for instr in stage:
            if not instr.upper().startswith("COPY ") or "--from=" in instr:
                continue
            sources = [a for a in instr.split()[1:-1] if not a.startswith("--")]
            for src in sources:
                if src != ".":
                    assert (REPO / src).exists(), f"{dockerfile}: COPY source {src} missing"


def test_dockerignore_keeps_what_the_images_need() -> None:
    patterns = [
        p.strip()
        for p in (REPO / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    for needed in ("uv.lock", "pyproject.toml", "libs", "services", "local"):
        assert needed not in patterns
    for heavy in (".git", ".state", ".venv"):
        assert heavy in patterns


def test_stream_processor_image_carries_spark_and_the_jars() -> None:
    text = (REPO / "services" / "stream-processor" / "Dockerfile").read_text()
    assert "local/spark/pom.xml" in text and "dependency:copy-dependencies" in text
    assert "eclipse-temurin:17" in text and "JAVA_HOME=/opt/java/openjdk" in text
    assert "COPY --from=jars /jars/ /opt/venv/lib/python3.11/site-packages/pyspark/jars/" in text
    assert "SPARK_HOME=/opt/venv/lib/python3.11/site-packages/pyspark" in text
    assert "docker-entrypoint.sh" in text


def _fake_java(tmp_path: Path) -> Path:
    java_home = tmp_path / "jdk"
    (java_home / "bin").mkdir(parents=True)
    java = java_home / "bin" / "java"
    java.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return java_home


def test_entrypoint_starts_the_spark_executor(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "JAVA_HOME": str(_fake_java(tmp_path)),
        "SPARK_HOME": "/opt/spark-home",
        "SPARK_CONF_DIR": "/opt/spark/conf",
        "SPARK_JAVA_OPT_10": "-Dlast=10",
        "SPARK_JAVA_OPT_0": "-Dfirst",
        "SPARK_JAVA_OPT_2": "-Dwith=a space",
        "SPARK_EXECUTOR_MEMORY": "1g",
        "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@driver.ns.svc:7078",
        "SPARK_EXECUTOR_ID": "3",
        "SPARK_EXECUTOR_CORES": "2",
        "SPARK_APPLICATION_ID": "spark-app-1",
        "SPARK_EXECUTOR_POD_IP": "10.1.2.3",
        "SPARK_RESOURCE_PROFILE_ID": "0",
        "SPARK_EXECUTOR_POD_NAME": "exec-3",
    }
    proc = run(["bash", str(ENTRYPOINT), "executor"], env=env)
    assert proc.returncode == 0, proc.stderr
    args = proc.stdout.splitlines()
    assert args[:3] == ["-Dfirst", "-Dwith=a space", "-Dlast=10"]
    assert args[3:5] == ["-Xms1g", "-Xmx1g"]
    assert args[5:7] == ["-cp", "/opt/spark/conf:/opt/spark-home/jars/*"]
    assert args[7] == "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend"
    flags = dict(zip(args[8::2], args[9::2], strict=True))
    assert flags == {
        "--driver-url": env["SPARK_DRIVER_URL"],
        "--executor-id": "3",
        "--cores": "2",
        "--app-id": "spark-app-1",
        "--hostname": "10.1.2.3",
        "--resourceProfileId": "0",
        "--podName": "exec-3",
    }


def test_entrypoint_passes_other_commands_through() -> None:
    proc = run(["bash", str(ENTRYPOINT), "echo", "driver", "mode"])
    assert proc.returncode == 0 and proc.stdout == "driver mode\n"
    assert os.access(ENTRYPOINT, os.X_OK)
