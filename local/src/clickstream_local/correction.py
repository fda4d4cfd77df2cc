"""The late-data correction pass as a supervised part of the local stack.

`python -m stream_processor correct --every N` runs the incremental pass every N seconds
(`PROCESSOR_CORRECTION_INTERVAL_SECONDS`, 120 by default here) with a Spark session of its
own, so late events reach the final aggregates within a few minutes of their arrival. It
reads the processor's settings (session gap, watermark delay, bots), so both compute the same
definitions. On Kubernetes the same pass runs from Airflow instead (docs/reliability.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

from clickstream_local.components import Component, child_env, http_ok
from clickstream_local.config import StackConfig, repo_root
from clickstream_local.services import service_env
from clickstream_local.supervisor import Supervisor

CORRECTION = "correction"


class CorrectionLoop(Component):
    name = CORRECTION
    needs = ("s3",)
    # A Spark session takes ~10 s on 2 cores, more while the platform is busy.
    start_timeout = 180.0

    def __init__(self, config: StackConfig, supervisor: Supervisor) -> None:
        super().__init__(config, supervisor)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.config.correction_metrics_port}/metrics"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "stream_processor", "correct", "--every", "--no-progress"]

    def env(self) -> dict[str, str]:
        env = service_env(self.config, "stream-processor") | {
            # One core and a small heap: the streaming job keeps the other.
            "PROCESSOR_SPARK_MASTER": "local[1]",
            "PROCESSOR_DRIVER_MEMORY": "1g",
            "PROCESSOR_METRICS_HOST": "127.0.0.1",
            "PROCESSOR_CORRECTION_METRICS_PORT": str(self.config.correction_metrics_port),
            "PROCESSOR_CORRECTION_INTERVAL_SECONDS": "120",
            "PYTHONUNBUFFERED": "1",
        }
        return child_env(env | self.config.service_env.get(CORRECTION, {}))

    def cwd(self) -> Path:
        return repo_root()

    def prepare(self) -> None:
        if not self.config.spark_jars():
            raise RuntimeError(f"no jars in {self.config.spark_jars_dir} (run local/bootstrap.sh)")

    def is_ready(self) -> bool:
        return http_ok(self.metrics_url)
