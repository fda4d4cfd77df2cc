"""Daily: each hour's small lake objects rewritten into a few large ones (the DAG file).

One task per zone (each processed data set, the raw zone, errors/) compacts the hours of
the previous day and of the lookback before it (late events keep writing into past hours);
`report` pushes the object and byte counts before and after to Prometheus. Readers switch
over per hour through its manifest (`orchestration.lakefiles`). Trigger it with
`{"day": "2026-11-27"}` for another day, `{"lookback_days": 1}` for that day alone.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param

from orchestration import tasks
from orchestration.dag_defaults import dag_options, default_args
from orchestration.lakefiles import ZONES

with DAG(
    "clickstream_lake_compaction",
    default_args=default_args(timeout=timedelta(hours=4)),
    params={
        "day": Param(None, type=["null", "string"], description="day to compact (YYYY-MM-DD)"),
        "lookback_days": Param(None, type=["null", "integer"], description="days back"),
    },
    **dag_options("30 2 * * *", "Small lake objects into large ones, per hour", __doc__),
) as dag:
    zones = [
        PythonOperator(
            task_id=f"compact_{zone}", python_callable=tasks.compact, op_kwargs={"zone": zone}
        )
        for zone in ZONES
    ]
    report = PythonOperator(
        task_id="report", python_callable=tasks.compaction_report, trigger_rule="all_done"
    )
    zones >> report
