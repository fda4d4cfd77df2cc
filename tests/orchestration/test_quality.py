from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
import sqlglot

from clickstream_common.tables import ACTIVE_USERS_5M, EVENT_COUNTS_MINUTE, Dialect
from orchestration.lakefiles import ZONES, LakeObject, compacted_key, hour_prefix
from orchestration.quality import (
    CHECKS,
    FIELD_RULES,
    CheckResult,
    Horizon,
    Status,
    compare_rows,
    distinct_events,
    dq_results_ddl,
    duplicates_sql,
    final_window,
    insert_results_sql,
    judge_null_rates,
    loaded_objects,
    null_rates_sql,
    values_match,
)
from orchestration.settings import Settings
from orchestration.tasks import dq_collect

HOUR = datetime(2026, 11, 28, 9, tzinfo=UTC)
READS = {Dialect.POSTGRES: "postgres", Dialect.REDSHIFT: "redshift"}


@pytest.mark.parametrize("dialect", list(Dialect))
def test_statements_parse_in_both_dialects(dialect: Dialect) -> None:
    statements = [
        null_rates_sql(FIELD_RULES),
        duplicates_sql(),
        insert_results_sql(),
        *dq_results_ddl(dialect),
    ]
    for statement in statements:
        sqlglot.parse_one(statement.replace("%s", "NULL"), read=READS[dialect])
    assert "FILTER" not in null_rates_sql(FIELD_RULES)  # Redshift has no FILTER clause


def test_null_rates_are_judged_against_their_setting() -> None:
    settings = Settings(dq_null_rate_max=0.01, dq_adjusted_time_rate_max=0.05)
    counts: list[int] = []
    for rule in FIELD_RULES:
        counts += [200, 1 if rule.column != "revenue" else 10]
    results = judge_null_rates(FIELD_RULES, counts, settings, HOUR)
    failed = {r.subject for r in results if r.status is Status.FAILED}
    assert failed == {"revenue of purchases"}
    adjusted = next(r for r in results if r.subject.startswith("event_time replaced"))
    assert adjusted.expected == 0.05 and adjusted.observed == 0.005
    # No event of a kind: nothing to judge, nothing failed.
    empty = judge_null_rates(FIELD_RULES, [0] * (2 * len(FIELD_RULES)), settings, HOUR)
    assert all(r.status is Status.OK for r in empty)


def test_rows_compare_by_key_and_value_with_float_tolerance() -> None:
    expected = {("a",): (1, 2.0), ("b",): (3, 0.1 + 0.2)}
    assert compare_rows(expected, {("a",): (1, 2.0), ("b",): (3, 0.3)}) == (2, "")
    matching, detail = compare_rows(expected, {("a",): (1, 2.5), ("c",): (0, 0.0)})
    assert matching == 0
    assert "('a',): expected (1, 2.0), found (1, 2.5)" in detail
    assert "('b',): expected" in detail and "1 not expected" in detail
    assert not values_match((None,), (0.0,))


def test_events_of_batches_not_loaded_are_left_out_of_the_lake_count() -> None:
    zone = ZONES["events"]
    prefix = hour_prefix(zone, HOUR)
    now = HOUR + timedelta(hours=2)
    loaded = LakeObject(prefix + "batch-000000000001.parquet", 1, now)
    waiting = LakeObject(prefix + "batch-000000000002.parquet", 1, now)
    compacted = LakeObject(compacted_key(zone, HOUR, now, 0, 0), 1, now)
    statuses = {"processed/events/_commits/batch-000000000001.json": "loaded"}
    assert loaded_objects([loaded, waiting, compacted], statuses) == ([loaded, compacted], 1)


def test_events_count_once_per_source_and_id() -> None:
    keys = pa.table({"source": ["web", "web", "app", "web"], "event_id": ["1", "1", "1", "2"]})
    assert distinct_events(keys) == 3
    assert distinct_events(keys.slice(0, 0)) == 0


def test_only_final_windows_are_compared() -> None:
    horizon = Horizon(
        10, HOUR + timedelta(minutes=30), None, frozenset({HOUR + timedelta(minutes=7)})
    )
    assert final_window(EVENT_COUNTS_MINUTE, HOUR, horizon)
    assert not final_window(EVENT_COUNTS_MINUTE, HOUR + timedelta(minutes=30), horizon)
    assert final_window(ACTIVE_USERS_5M, HOUR + timedelta(minutes=25), horizon)
    assert not final_window(ACTIVE_USERS_5M, HOUR + timedelta(minutes=26), horizon)
    # A minute the correction pass still waits on is not final yet, in every window holding it.
    assert not final_window(EVENT_COUNTS_MINUTE, HOUR + timedelta(minutes=7), horizon)
    assert not final_window(ACTIVE_USERS_5M, HOUR + timedelta(minutes=3), horizon)


def test_a_check_whose_task_failed_is_an_error_not_a_pass() -> None:
    ok = CheckResult("duplicates", "events", HOUR, 0, 0, Status.OK)
    assert CheckResult.from_dict(ok.as_dict()) == ok
    results = dq_collect({"duplicates": [ok.as_dict()]}, HOUR)
    assert len(results) == len(CHECKS)
    assert {r.check for r in results if r.status is Status.ERROR} == set(CHECKS) - {"duplicates"}
