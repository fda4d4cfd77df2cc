from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow.compute as pc
import pytest
from moto.server import ThreadedMotoServer
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from clickstream_common.settings import S3Settings
from clickstream_common.tables import EVENTS, TableSpec
from stream_processor import transforms
from stream_processor.sinks import table_for


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


@pytest.fixture(scope="module")
def s3_settings(request: pytest.FixtureRequest) -> Iterator[S3Settings]:
    """An S3 endpoint of moto's with the test module's bucket (`BUCKET`), for unit tests of
    the executors' write and read paths (tests/processor runs the job on the real S3 server).
    Moto's servers in one process share their buckets: each module has a bucket of its own."""
    bucket = str(request.module.BUCKET)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    settings = S3Settings(
        s3_endpoint_url=f"http://{host}:{port}",
        s3_bucket=bucket,
        aws_access_key_id="test",
        aws_secret_access_key="test",  # type: ignore[arg-type]
    )
    settings.s3_client().create_bucket(Bucket=bucket)
    yield settings
    server.stop()


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


@pytest.fixture
def lake_split() -> Callable[[DataFrame], tuple[DataFrame, DataFrame]]:
    """`lake_split(kafka_records) -> (events, errors)`: the job's one lake read
    (`transforms.lake_batch`) split as `BatchWriters.lake` splits it, on the error reason;
    events in the events table's columns (without `batch_id`), errors in `ERROR_COLUMNS`."""

    def split(kafka_records: DataFrame) -> tuple[DataFrame, DataFrame]:
        batch = transforms.lake_batch(kafka_records)
        rejected = F.col("error_reason").isNotNull()
        events = batch.where(~rejected).select(*(n for n in EVENTS.column_names if n != "batch_id"))
        errors = batch.where(rejected).withColumnRenamed("error_reason", "reason")
        return events, errors.select(*transforms.ERROR_COLUMNS)

    return split


@pytest.fixture
def dataset_rows(spark: SparkSession) -> Callable[[DataFrame, TableSpec, int], DataFrame]:
    """`dataset_rows(aggregates, table, batch_id)`: one windowed data set's rows as the job
    writes them: `transforms.window_rows` collected once, split by data set and stamped by
    `sinks.table_for` (as `BatchWriters.windows` does), back in a DataFrame for comparison."""

    def rows(aggregates: DataFrame, table: TableSpec, batch_id: int) -> DataFrame:
        combined = transforms.window_rows(aggregates).toArrow()
        mine = combined.filter(pc.equal(combined["dataset"], table.name))
        return spark.createDataFrame(table_for(table, mine, batch_id))

    return rows
