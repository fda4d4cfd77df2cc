"""Airflow DAGs and the plain functions they call."""
