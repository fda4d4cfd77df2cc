"""Hourly: committed batches missing from the load ledger, loaded (the DAG file).

The loader's reconciliation sweep run on a schedule (`orchestration.catchup`), so batches
committed while the loader was down or lost their notification reach the warehouse at the
next run. Trigger with `{"full": true}` to sweep the whole history.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param

from orchestration import tasks
from orchestration.dag_defaults import dag_options, default_args

with DAG(
    "clickstream_catchup_load",
    default_args=default_args(timeout=timedelta(minutes=50)),
    params={"full": Param(False, type="boolean", description="sweep the whole history")},
    **dag_options("10 * * * *", "Committed batches missing from the ledger, loaded", __doc__),
) as dag:
    PythonOperator(task_id="sweep", python_callable=tasks.catch_up)
