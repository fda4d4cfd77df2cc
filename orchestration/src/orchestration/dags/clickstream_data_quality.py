"""Hourly: the data-quality checks of the previous closed hour (the DAG file Airflow parses).

Runs at 20 past, after the hourly correction (5 past) and the catch-up load (10 past), so
the hour's late events are corrected and its batches loaded. Each check is a task
(`orchestration.quality`); `record` writes every result to `analytics.dq_results` and pushes
them to Prometheus whatever the checks' outcome (a check whose task failed is recorded as
an error); `verdict` fails the run when a result failed, after they are recorded. Trigger it
with `{"hour": "2026-11-28T09:00:00Z"}` to check another hour.
"""

from __future__ import annotations

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param

from orchestration import tasks
from orchestration.dag_defaults import dag_options, default_args
from orchestration.quality import CHECKS

with DAG(
    "clickstream_data_quality",
    default_args=default_args(retries=1),
    params={"hour": Param(None, type=["null", "string"], description="hour to check (ISO)")},
    **dag_options("20 * * * *", "Data-quality checks of the previous closed hour", __doc__),
) as dag:
    prepare = PythonOperator(task_id="prepare", python_callable=tasks.dq_prepare)
    checks = [
        PythonOperator(
            task_id=f"check_{check}",
            python_callable=tasks.dq_check,
            op_kwargs={"check": check},
            retries=0,  # a failed check is recorded as an error; the run retries as a whole
        )
        for check in CHECKS
    ]
    record = PythonOperator(
        task_id="record", python_callable=tasks.dq_record, trigger_rule="all_done"
    )
    verdict = PythonOperator(task_id="verdict", python_callable=tasks.dq_verdict, retries=0)
    prepare >> checks
    checks >> record
    record >> verdict
