"""The batch side on the local stack: a Prometheus pushgateway, and the DAGs run on demand.

The DAGs (`orchestration/`) run in Airflow's own environment (`.state/airflow/venv`, made
by `local/bootstrap.d/airflow.sh`: Airflow pins FastAPI below the collector's), so they are
started as a separate process with the stack's connection settings:

    python -m clickstream_local dag clickstream_data_quality [--conf '{"hour": "..."}']
    make dag DAG=clickstream_data_quality

The pushgateway (Debian's `prometheus-pushgateway`) receives what the batch jobs push
(data-quality results, compaction counts); Prometheus scrapes it with `honor_labels`, and the
alert rules read it like any service's metrics.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from clickstream_local.components import Component, child_env, http_ok
from clickstream_local.config import StackConfig, default_state_dir, repo_root
from clickstream_local.services import service_env

PUSHGATEWAY = "pushgateway"
PUSHGATEWAY_BIN = Path("/usr/bin/prometheus-pushgateway")


class Pushgateway(Component):
    name = PUSHGATEWAY
    start_timeout = 30.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.pushgateway_port}"

    def prepare(self) -> None:
        if not PUSHGATEWAY_BIN.is_file():
            raise RuntimeError(f"{PUSHGATEWAY_BIN} missing (run local/bootstrap.sh)")

    def command(self) -> list[str]:
        # In memory only: a restarted gateway forgets old pushes, and the next run pushes again.
        return [
            str(PUSHGATEWAY_BIN),
            f"--web.listen-address=127.0.0.1:{self.config.pushgateway_port}",
        ]

    def is_ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")


def airflow_dir() -> Path:
    """Airflow's venv and home, made by local/bootstrap.d/airflow.sh under the project's state
    (scratch stacks share it, like the jars); CLICKSTREAM_AIRFLOW_DIR overrides it."""
    return Path(os.environ.get("CLICKSTREAM_AIRFLOW_DIR", default_state_dir() / "airflow"))


def orchestration_env(config: StackConfig, extra: dict[str, str] | None = None) -> dict[str, str]:
    """What the DAGs' tasks read: the processor's settings (the Spark tasks compute its
    definitions), the loader's (warehouse, catch-up), and where to push figures."""
    env = service_env(config, "stream-processor") | service_env(config, "warehouse-loader")
    env |= {
        # One core for the batch jobs' Spark: the streaming job keeps the other.
        "PROCESSOR_SPARK_MASTER": "local[1]",
        "PROCESSOR_DRIVER_MEMORY": "1g",
        "ORCHESTRATION_PUSHGATEWAY_URL": f"http://127.0.0.1:{config.pushgateway_port}",
        "CLICKSTREAM_STATE_DIR": str(config.state_dir),
        "AIRFLOW_HOME": str(airflow_dir() / "home"),
        "PYTHONUNBUFFERED": "1",
    }
    return env | config.service_env.get("orchestration", {}) | (extra or {})


def run_dag(
    config: StackConfig,
    dag_id: str,
    conf: dict[str, object] | None = None,
    logical_date: str | None = None,
    extra_env: dict[str, str] | None = None,
    capture: bool = False,
) -> subprocess.CompletedProcess[str]:
    """One DAG run against this stack (`python -m orchestration run`, Airflow's venv)."""
    python = airflow_dir() / "venv" / "bin" / "python"
    if not python.is_file():
        raise RuntimeError(f"{python} missing (run local/bootstrap.sh)")
    command = [str(python), "-m", "orchestration", "run", dag_id, "--conf", json.dumps(conf or {})]
    if logical_date:
        command += ["--logical-date", logical_date]
    env = child_env(orchestration_env(config, extra_env))
    # Airflow's venv must not see the workspace venv's packages.
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join([str(python.parent), env.get("PATH", "")])
    return subprocess.run(
        command, env=env, cwd=repo_root(), text=True, capture_output=capture, check=False
    )
