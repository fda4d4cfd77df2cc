"""Hourly: late events into the final aggregates (the DAG file Airflow parses).

`correct` runs the late-data correction pass (`stream_processor.correction.correct_pending`)
over the events batches committed since its last run: every closed window and session that
received a late event is recomputed from the lake's events and written as a correction
batch; `loaded` waits until the loader has them in the warehouse.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from orchestration import tasks
from orchestration.dag_defaults import dag_options, default_args

with DAG(
    "clickstream_hourly_correction",
    default_args=default_args(timeout=timedelta(minutes=50)),
    **dag_options("5 * * * *", "Late events into the final aggregates", __doc__),
) as dag:
    correct = PythonOperator(task_id="correct", python_callable=tasks.correct)
    loaded = PythonOperator(
        task_id="loaded", python_callable=tasks.wait_loaded, op_kwargs={"upstream": "correct"}
    )
    correct >> loaded
