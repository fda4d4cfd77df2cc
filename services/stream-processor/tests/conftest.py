from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pyspark.sql import DataFrame, Row, SparkSession


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config(
            "spark.sql.streaming.stateStore.providerClass",
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
        )
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


KAFKA_SCHEMA = "value binary, topic string, partition int, offset long, timestamp timestamp"
# When the bus recorded the test records: after every event time the tests use (the
# processor bounds event times by it).
KAFKA_TIME = datetime(2026, 11, 27, 14, 30, tzinfo=UTC)


def _event(event_id: str, event_type: str, at: str, **fields: Any) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "event_type": event_type,
            "timestamp": at,
            "event_time": at,
            "received_at": at,
            "source": "test",
            **fields,
        }
    )


@pytest.fixture
def event() -> Callable[..., bytes]:
    """`event(id, type, time, **fields)`: an enriched event as the collector publishes it
    (foundation fields only; the enrichment fields are absent)."""
    return _event


@pytest.fixture
def kafka_frame(spark: SparkSession) -> Callable[[list[bytes]], DataFrame]:
    """Kafka source rows (value, topic, partition, offset, timestamp) for static tests."""

    def make(values: list[bytes]) -> DataFrame:
        rows = [
            Row(value=v, topic="clickstream.events", partition=0, offset=i, timestamp=KAFKA_TIME)
            for i, v in enumerate(values)
        ]
        return spark.createDataFrame(rows, KAFKA_SCHEMA)

    return make
