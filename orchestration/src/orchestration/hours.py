"""Hours: the lake's partitions (`date=…/hour=…`) and the unit the hourly jobs work in.

(`stream_processor.correction` has the same two helpers; these stay here so that the DAG
files, which Airflow imports on every parse, do not import Spark.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)


def floor_hour(t: datetime) -> datetime:
    """The start of the hour `t` is in, in UTC."""
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """Every hour that [start, end) touches."""
    hours = []
    hour = floor_hour(start)
    while hour < end:
        hours.append(hour)
        hour += HOUR
    return hours
