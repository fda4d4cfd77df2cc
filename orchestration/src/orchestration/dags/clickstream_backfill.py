"""On demand: data sets rebuilt for a time range from the raw zone (the DAG file).

Trigger with `{"start": "2026-11-28T08:00:00Z", "end": "2026-11-28T10:00:00Z",
"datasets": ["event_counts_minute", "sessions"]}` (all data sets when `datasets` is empty).
`rebuild` runs the streaming job's functions in batch mode over the raw zone and writes
correction batches per data set and hour, logging its progress hour by hour; `loaded` waits
until the loader has them in the warehouse (`orchestration.backfill`).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param

from orchestration import tasks
from orchestration.backfill import DATASETS
from orchestration.dag_defaults import dag_options, default_args

with DAG(
    "clickstream_backfill",
    default_args=default_args(retries=0, timeout=timedelta(hours=12)),
    params={
        "start": Param(None, type=["null", "string"], description="range start (ISO time)"),
        "end": Param(None, type=["null", "string"], description="range end (ISO time)"),
        "datasets": Param(
            [], type="array", items={"enum": list(DATASETS)}, description="data sets"
        ),
    },
    **dag_options(None, "Rebuild data sets for a time range from the raw zone", __doc__),
) as dag:
    rebuild = PythonOperator(task_id="rebuild", python_callable=tasks.backfill)
    loaded = PythonOperator(
        task_id="loaded", python_callable=tasks.wait_loaded, op_kwargs={"upstream": "rebuild"}
    )
    rebuild >> loaded
