"""The DAG files: the folder Airflow reads (`AIRFLOW__CORE__DAGS_FOLDER`, or git-sync's
`dags.gitSync.subPath`). Each file wires `orchestration.tasks` into one DAG."""
