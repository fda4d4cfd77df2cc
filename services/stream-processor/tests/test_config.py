"""The micro-batch bounds: records per trigger derived from bytes, the sessions query's bound,
and the driver's limits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from clickstream_common.bus import max_record_bytes
from stream_processor.config import RESULT_BYTES_PER_RECORD_BYTE, Settings, interval, size_bytes
from stream_processor.spark_setup import spark_conf

MIB = 2**20


def test_sizes_read_like_spark() -> None:
    assert size_bytes("512m") == 512 * MIB
    assert size_bytes("2G") == 2 * 2**30
    assert size_bytes("64mb") == 64 * MIB
    assert size_bytes("1048576") == MIB  # maxResultSize: bytes
    assert size_bytes("1024", "m") == 2**30  # driver memory: MiB
    with pytest.raises(ValueError, match="512m"):
        size_bytes("lots")


def test_defaults_follow_the_driver_heap() -> None:
    settings = Settings(processor_driver_memory="2g")
    # Half the heap for one collect, half of that for the records read (the lake's Arrow
    # table holds them about twice).
    assert settings.driver_max_result_bytes == 2**30
    assert settings.max_batch_bytes == 2**30 // RESULT_BYTES_PER_RECORD_BYTE
    assert settings.processor_max_record_bytes == max_record_bytes()
    assert settings.records_per_trigger == (512 * MIB) // max_record_bytes() == 9362
    assert spark_conf(settings)["spark.driver.maxResultSize"] == str(2**30)
    # A smaller driver (the chart's 1g) gets a proportionally smaller batch.
    small = Settings(processor_driver_memory="1g")
    assert small.records_per_trigger == (256 * MIB) // max_record_bytes()


def test_the_record_cap_still_applies_when_lower() -> None:
    settings = Settings(processor_max_offsets_per_trigger=1500)
    assert settings.records_per_trigger == 1500
    # Small records, a bigger budget: the cap per trigger is the lower of the two.
    tiny = Settings(processor_max_record_bytes=1024, processor_max_offsets_per_trigger=200_000)
    assert tiny.records_per_trigger == 200_000


def test_an_explicit_combination_is_honoured() -> None:
    settings = Settings(
        processor_driver_memory="512m",
        processor_driver_max_result_size="8m",
        processor_max_batch_bytes=4 * MIB,
        processor_max_record_bytes=40 * 1024,
    )
    assert settings.records_per_trigger == 102
    assert spark_conf(settings)["spark.driver.maxResultSize"] == str(8 * MIB)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        # Twice the records read would not fit the result limit.
        (
            {"processor_driver_max_result_size": "8m", "processor_max_batch_bytes": 5 * MIB},
            "over spark.driver.maxResultSize",
        ),
        # A result limit above the heap fails the driver, not the query.
        (
            {"processor_driver_memory": "1g", "processor_driver_max_result_size": "2g"},
            "at most PROCESSOR_DRIVER_MEMORY",
        ),
        # Spark's 0 means no limit: exactly what the bound is for.
        ({"processor_driver_max_result_size": "0"}, "above 0"),
        # Not even one of the largest records per batch.
        (
            {"processor_max_batch_bytes": 1024, "processor_max_record_bytes": 4096},
            "below PROCESSOR_MAX_RECORD_BYTES",
        ),
    ],
)
def test_combinations_that_can_exceed_the_driver_are_refused(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**fields)  # type: ignore[arg-type]


def test_a_record_over_the_bus_limit_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(processor_max_record_bytes=2 * MIB)


def test_intervals() -> None:
    assert interval("30 minutes") == timedelta(minutes=30)
    assert interval("2 Hours") == timedelta(hours=2)
    assert interval("1 minute") == timedelta(minutes=1)
    with pytest.raises(ValueError):
        interval("1 fortnight")


def test_the_sessions_query_may_read_what_the_lake_commits_between_its_triggers() -> None:
    settings = Settings(
        processor_max_offsets_per_trigger=1_000,
        processor_trigger_interval="2 seconds",
        processor_sessions_trigger_interval="30 seconds",
    )
    assert settings.records_per_trigger == 1_000
    assert settings.sessions_rows_per_trigger == 15_000
    odd = Settings(
        processor_max_offsets_per_trigger=1_000,
        processor_trigger_interval="4 seconds",
        processor_sessions_trigger_interval="10 seconds",
    )
    assert odd.sessions_rows_per_trigger == 3_000  # rounded up: never behind the lake
    same = Settings(
        processor_max_offsets_per_trigger=1_000, processor_sessions_trigger_interval="1 second"
    )
    assert same.sessions_rows_per_trigger == 1_000
