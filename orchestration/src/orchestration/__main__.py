"""`python -m orchestration`: the DAGs without a scheduler (run it with the Airflow venv).

    python -m orchestration dags                    # the DAGs, their tasks, import errors
    python -m orchestration run clickstream_data_quality [--logical-date T] [--conf JSON]

`run` executes one DAG run in this process with Airflow's `dag.test()`: every task, in
dependency order, against whatever the environment points at (`S3_*`, `WAREHOUSE_DSN`,
`KAFKA_*`, `PROCESSOR_*`, `ORCHESTRATION_*`); `make dag DAG=<id>` runs it against the local
stack. Airflow keeps its metadata in SQLite under `AIRFLOW_HOME` (default
`.state/airflow/home`, migrated on first use). The exit status is 0 when the run succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DAGS_FOLDER = Path(__file__).resolve().parent / "dags"


def airflow_environment(state_dir: Path | None = None) -> dict[str, str]:
    """Airflow settings for running the DAGs in this process (set before importing Airflow:
    it reads its configuration at import)."""
    state = state_dir or Path(os.environ.get("CLICKSTREAM_STATE_DIR", Path.cwd() / ".state"))
    home = os.environ.get("AIRFLOW_HOME") or str(state / "airflow" / "home")
    return {
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }


def ensure_database(env: dict[str, str]) -> None:
    """`airflow db migrate` once per AIRFLOW_HOME (SQLite; a few seconds, then a no-op)."""
    home = Path(env["AIRFLOW_HOME"])
    stamp = home / ".migrated"
    if stamp.is_file():
        return
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=os.environ | env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    stamp.write_text(datetime.now(UTC).isoformat() + "\n")


def dag_bag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))


def cycles(dag: Any) -> str | None:
    """Why a DAG is not acyclic (DagBag refuses such a DAG already; checked again here)."""
    try:
        dag.check_cycle()
    except Exception as exc:
        return str(exc)
    return None


def describe(bag: Any) -> dict[str, Any]:
    return {
        "cycles": {
            dag_id: problem
            for dag_id, dag in sorted(bag.dags.items())
            if (problem := cycles(dag)) is not None
        },
        "dags": {
            dag_id: {
                "schedule": str(dag.schedule) if dag.schedule is not None else None,
                "tasks": sorted(t.task_id for t in dag.tasks),
            }
            for dag_id, dag in sorted(bag.dags.items())
        },
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    }


def run(dag_id: str, logical_date: datetime, conf: dict[str, Any]) -> int:
    bag = dag_bag()
    if bag.import_errors:
        print(json.dumps(describe(bag)["import_errors"], indent=2), file=sys.stderr)
        return 2
    dag = bag.dags.get(dag_id)
    if dag is None:
        print(f"no DAG {dag_id!r}; known: {', '.join(sorted(bag.dags))}", file=sys.stderr)
        return 2
    dag_run = dag.test(logical_date=logical_date, run_conf=conf or None)
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    summary = {"dag_id": dag_id, "state": str(dag_run.state), "tasks": states}
    print("RESULT " + json.dumps(summary, sort_keys=True), flush=True)
    return 0 if str(dag_run.state) == "success" else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dags", help="list the DAGs and import errors (JSON)")
    run_parser = commands.add_parser("run", help="run one DAG now, without a scheduler")
    run_parser.add_argument("dag_id")
    run_parser.add_argument(
        "--logical-date",
        type=datetime.fromisoformat,
        default=None,
        help="the run's logical date (ISO; default now)",
    )
    run_parser.add_argument("--conf", type=json.loads, default={}, help="run params (JSON)")
    args = parser.parse_args(argv)

    env = airflow_environment()
    os.environ.update(env)
    ensure_database(env)
    if args.command == "dags":
        description = describe(dag_bag())
        print("RESULT " + json.dumps(description, sort_keys=True), flush=True)
        return 1 if description["import_errors"] or description["cycles"] else 0
    when = args.logical_date or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return run(args.dag_id, when, args.conf)


if __name__ == "__main__":
    sys.exit(main())
