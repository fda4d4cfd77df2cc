from datetime import UTC, datetime

import orjson
import pytest
from pyspark.sql import Row, SparkSession
from pyspark.testing import assertDataFrameEqual

from clickstream_common.tables import EVENT_COUNTS_MINUTE
from stream_processor import transforms
from stream_processor.config import Settings
from stream_processor.session import spark_conf

pytestmark = pytest.mark.spark


def kafka_frame(spark: SparkSession, values: list[bytes]):  # type: ignore[no-untyped-def]
    ts = datetime(2026, 11, 27, 12, 30, tzinfo=UTC)
    return spark.createDataFrame(
        [Row(value=v, timestamp=ts) for v in values], "value binary, timestamp timestamp"
    )


def event(event_id: str, event_type: str, at: str, **fields: object) -> bytes:
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


def test_parse_marks_malformed_and_incomplete_records_invalid(spark: SparkSession) -> None:
    frame = kafka_frame(
        spark,
        [
            event(
                "e1",
                "page_view",
                "2026-11-27T12:00:01.500000Z",
                anonymous_id="a1",
                context={"user_agent": "UA"},
                properties={"k": [1, 2]},
            ),
            b"{not json",
            event("e3", "click", "2026-11-27T12:00:02Z"),  # no identity
        ],
    )
    parsed = transforms.parse_events(frame).orderBy("raw")
    rows = {r["event_id"]: r for r in parsed.collect() if r["event_id"]}
    assert rows["e1"]["is_valid"] is True
    assert rows["e1"]["event_time"] == datetime(2026, 11, 27, 12, 0, 1, 500000)
    assert rows["e1"]["context"]["user_agent"] == "UA"
    assert orjson.loads(rows["e1"]["properties"]) == {"k": [1, 2]}
    assert rows["e3"]["is_valid"] is False
    assert parsed.where("not is_valid").count() == 2


def test_minute_counts_with_exact_unique_users(spark: SparkSession) -> None:
    frame = kafka_frame(
        spark,
        [
            event("1", "page_view", "2026-11-27T12:00:01Z", user_id="u1"),
            event("2", "page_view", "2026-11-27T12:00:59Z", user_id="u1"),
            event("3", "page_view", "2026-11-27T12:00:30Z", anonymous_id="a9"),
            event("4", "purchase", "2026-11-27T12:01:00Z", user_id="u2", anonymous_id="a2"),
        ],
    )
    events = transforms.parse_events(frame).where("is_valid")
    counts = transforms.with_batch_id(transforms.event_counts_minute(events), 3)
    m0, m1, m2 = (datetime(2026, 11, 27, 12, m) for m in (0, 1, 2))
    expected = spark.createDataFrame(
        [(m0, m1, "page_view", 3, 2, 3), (m1, m2, "purchase", 1, 1, 3)],
        counts.schema,
    )
    assertDataFrameEqual(counts, expected)
    assert tuple(counts.columns) == EVENT_COUNTS_MINUTE.column_names


def test_raw_zone_keeps_original_text_by_kafka_hour(spark: SparkSession) -> None:
    frame = kafka_frame(spark, [b'{"any": "thing"}'])
    assertDataFrameEqual(
        transforms.raw_zone(frame),
        [Row(value='{"any": "thing"}', date="2026-11-27", hour="12")],
    )


def test_spark_conf_for_local_and_kubernetes() -> None:
    local = spark_conf(
        Settings(s3_endpoint_url="http://127.0.0.1:9000", processor_spark_jars="a.jar")
    )
    assert local["spark.master"] == "local[2]"
    assert local["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert local["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert local["spark.jars"] == "a.jar"
    k8s = spark_conf(
        Settings(
            processor_spark_master="k8s://https://kubernetes.default.svc",
            processor_executor_image="img:1",
            processor_driver_host="drv",
        )
    )
    assert k8s["spark.submit.deployMode"] == "client"
    assert k8s["spark.kubernetes.container.image"] == "img:1"
    assert k8s["spark.driver.host"] == "drv"
