"""Every transform as a pure DataFrame -> DataFrame function, on static frames."""

import itertools
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime, timedelta

import orjson
import pytest
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.testing import assertDataFrameEqual

from clickstream_common.schema import purchase_revenue
from clickstream_common.tables import (
    ACTIVE_USERS_5M,
    EVENT_COUNTS_MINUTE,
    EVENTS,
    PAGE_VIEWS_MINUTE,
    PRODUCT_STATS_MINUTE,
    SESSIONS,
    TableSpec,
)
from stream_processor import transforms
from stream_processor.config import Settings
from stream_processor.job import POOL_WEIGHTS
from stream_processor.spark_setup import fair_scheduler_pools, spark_conf

pytestmark = pytest.mark.spark

Event = Callable[..., bytes]
Frame = Callable[[list[bytes]], DataFrame]
LakeSplit = Callable[[DataFrame], tuple[DataFrame, DataFrame]]
DatasetRows = Callable[[DataFrame, TableSpec, int], DataFrame]


def t(hh_mm_ss: str) -> datetime:
    """A naive UTC time on the test day, as Spark returns timestamps in a UTC session."""
    return datetime.fromisoformat(f"2026-11-27T{hh_mm_ss}")


def valid_events(frame: DataFrame) -> DataFrame:
    return transforms.aggregate_input(frame)


def test_parse_cleans_flattens_and_types_every_column(
    kafka_frame: Frame, event: Event, lake_split: LakeSplit
) -> None:
    frame = kafka_frame(
        [
            event(
                "e1",
                " Page-View ",
                "2026-11-27T12:00:01.500+00:00",
                user_id="  u1  ",
                anonymous_id="",
                page_url="https://Shop.Example.com/p/P1?utm_source=x",
                currency="eur",
                properties={"order_id": 17, "items": "3", "other": [1]},
                context={"locale": "en-GB", "screen_width": "wide"},
                campaign={"source": "newsletter"},
                user_agent_info={"browser_family": "Firefox", "is_bot": False},
                client_ip="10.1.2.0",
            )
        ]
    )
    rows = lake_split(frame)[0].collect()
    assert len(rows) == 1
    row = rows[0].asDict()
    assert tuple(row) == tuple(n for n in EVENTS.column_names if n != "batch_id")
    assert row["event_type"] == "page_view"
    assert row["user_id"] == "u1" and row["anonymous_id"] is None and row["user_key"] == "u1"
    assert row["event_time"] == t("12:00:01.500000")
    assert (row["page_host"], row["page_path"]) == ("shop.example.com", "/p/P1")
    assert row["currency"] == "EUR"
    assert (row["property_order_id"], row["property_items"]) == ("17", 3)
    assert orjson.loads(row["properties"])["other"] == [1]
    # A value of the wrong type outside the fields the aggregates read is cleaned away.
    assert row["context_locale"] == "en-GB" and row["context_screen_width"] is None
    assert row["campaign_source"] == "newsletter" and row["campaign_medium"] is None
    assert row["user_agent_info_browser_family"] == "Firefox"
    assert row["user_agent_info_is_bot"] is False
    assert row["client_ip"] == "10.1.2.0" and row["future_dated"] is False


def test_absent_enrichment_fields_are_nulls(
    kafka_frame: Frame, event: Event, lake_split: LakeSplit
) -> None:
    frame = kafka_frame([event("e1", "click", "2026-11-27T12:00:00Z", anonymous_id="a")])
    row = lake_split(frame)[0].first()
    assert row is not None
    for name in ("client_ip", "campaign_source", "user_agent_info_is_bot", "referrer_host"):
        assert row[name] is None
    assert row["page_host"] is None and row["page_path"] is None
    assert row["user_key"] == "a"


def test_device_time_is_used_where_no_correction_applies(kafka_frame: Frame, event: Event) -> None:
    raw = orjson.loads(event("e1", "click", "2026-11-27T12:00:00Z", anonymous_id="a"))
    del raw["event_time"]
    frame = kafka_frame([orjson.dumps(raw)])
    assertDataFrameEqual(
        transforms.aggregate_input(frame).select("event_id", "event_time"),
        [Row(event_id="e1", event_time=t("12:00:00"))],
    )


def test_malformed_and_invalid_records_become_errors_with_reasons(
    kafka_frame: Frame, event: Event, lake_split: LakeSplit
) -> None:
    at = "2026-11-27T12:00:00Z"
    frame = kafka_frame(
        [
            b"{not json",
            b"\xff\xfe binary",
            b"[1, 2]",
            event("e1", "click", at),  # no identity
            event("e2", "Not Valid!", at, user_id="u"),
            event("e3", "click", at, user_id="u", quantity=-1),
            event("e4", "click", at, user_id="u", quantity="many"),
            event("e5", "click", "yesterday", user_id="u"),
            event("", "click", at, user_id="u"),
            event("e6", "click", at, user_id="u", user_agent_info={"is_bot": "maybe"}),
            # In UTC the year 10000: Spark holds it, Python and the warehouse's clients do not.
            event("e7", "click", "9999-12-31T23:59:59-10:00", user_id="u"),
            event("ok", "click", at, user_id="u"),
        ]
    )
    events, errors = lake_split(frame)
    assertDataFrameEqual(
        errors.select("kafka_offset", "reason"),
        [
            Row(kafka_offset=0, reason="malformed_json"),
            Row(kafka_offset=1, reason="malformed_json"),
            Row(kafka_offset=2, reason="malformed_json"),
            Row(kafka_offset=3, reason="missing_identity"),
            Row(kafka_offset=4, reason="invalid_event_type"),
            Row(kafka_offset=5, reason="out_of_range_quantity"),
            Row(kafka_offset=6, reason="invalid_quantity"),
            Row(kafka_offset=7, reason="invalid_timestamp"),
            Row(kafka_offset=8, reason="missing_event_id"),
            Row(kafka_offset=9, reason="invalid_is_bot"),
            Row(kafka_offset=10, reason="out_of_range_timestamp"),
        ],
    )
    # The original bytes travel with the error, untouched.
    first = errors.where("kafka_offset = 1").first()
    assert first is not None and bytes(first["value"]) == b"\xff\xfe binary"
    assert [r["event_id"] for r in events.collect()] == ["ok"]
    # The narrow read of the stateful queries accepts exactly the same records.
    assert [r["event_id"] for r in transforms.aggregate_input(frame).collect()] == ["ok"]


def test_the_backfill_s_events_are_the_stream_s_valid_half(
    kafka_frame: Frame, event: Event, lake_split: LakeSplit
) -> None:
    frame = kafka_frame(
        [
            event("e1", "click", "2026-11-27T12:00:00Z", user_id="u"),
            b"{",
            event("e2", "Not Valid!", "2026-11-27T12:00:00Z", user_id="u"),
            event("e3", "page_view", "2026-11-27T12:00:01Z", anonymous_id="a"),
        ]
    )
    backfill = transforms.events(transforms.clean_events(transforms.parse_records(frame)))
    assertDataFrameEqual(backfill, lake_split(frame)[0])
    assert [r["event_id"] for r in backfill.collect()] == ["e1", "e3"]


def test_lake_batch_keeps_every_record_once(kafka_frame: Frame, event: Event) -> None:
    frame = kafka_frame([event("e1", "click", "2026-11-27T12:00:00Z", user_id="u"), b"{"])
    rows = transforms.lake_batch(frame).collect()
    assert [(r["kafka_offset"], r["error_reason"]) for r in rows] == [
        (0, None),
        (1, "malformed_json"),
    ]
    # The raw zone's lines and partitions (test_sinks.py) come from these two columns.
    assert bytes(rows[1]["value"]) == b"{"
    assert rows[1]["kafka_timestamp"] == t("14:30:00")


def test_duplicates_count_once(kafka_frame: Frame, event: Event, dataset_rows: DatasetRows) -> None:
    first = event("e1", "page_view", "2026-11-27T12:00:01Z", user_id="u1")
    frame = kafka_frame(
        [first, first, event("e2", "page_view", "2026-11-27T12:00:02Z", user_id="u2")]
    )
    deduplicated = transforms.deduplicate(valid_events(frame), "2 minutes")
    counts = dataset_rows(transforms.window_aggregates(deduplicated), EVENT_COUNTS_MINUTE, 1)
    assertDataFrameEqual(
        counts,
        [
            Row(
                window_start=t("12:00:00"),
                window_end=t("12:01:00"),
                event_type="page_view",
                events=2,
                unique_users=2,
                batch_id=1,
            )
        ],
    )


def test_minute_counts_with_exact_unique_users(
    spark: SparkSession, kafka_frame: Frame, event: Event, dataset_rows: DatasetRows
) -> None:
    frame = kafka_frame(
        [
            event("1", "page_view", "2026-11-27T12:00:01Z", user_id="u1"),
            event("2", "page_view", "2026-11-27T12:00:59Z", user_id="u1"),
            event("3", "page_view", "2026-11-27T12:00:30Z", anonymous_id="a9"),
            event("4", "purchase", "2026-11-27T12:01:00Z", user_id="u2", anonymous_id="a2"),
        ]
    )
    aggregates = transforms.window_aggregates(valid_events(frame))
    counts = dataset_rows(aggregates, EVENT_COUNTS_MINUTE, 3)
    m0, m1, m2 = (t(f"12:0{m}:00") for m in (0, 1, 2))
    expected = spark.createDataFrame(
        [(m0, m1, "page_view", 3, 2, 3), (m1, m2, "purchase", 1, 1, 3)], counts.schema
    )
    assertDataFrameEqual(counts, expected)
    assert tuple(counts.columns) == EVENT_COUNTS_MINUTE.column_names


def test_active_users_in_five_minute_windows_sliding_by_one(
    kafka_frame: Frame, event: Event, dataset_rows: DatasetRows
) -> None:
    frame = kafka_frame(
        [
            event("1", "page_view", "2026-11-27T12:00:10Z", user_id="u1"),
            event("2", "click", "2026-11-27T12:02:10Z", user_id="u1"),
            event("3", "click", "2026-11-27T12:04:59Z", user_id="u2"),
        ]
    )
    active = dataset_rows(transforms.window_aggregates(valid_events(frame)), ACTIVE_USERS_5M, 0)
    # A 5-minute window [s, s+5) holds minute m when s is one of m-4 .. m.
    expected = {
        "11:56": 1, "11:57": 1, "11:58": 1, "11:59": 1, "12:00": 2, "12:01": 2, "12:02": 2,
        "12:03": 1, "12:04": 1,
    }  # fmt: skip
    assertDataFrameEqual(
        active,
        [
            Row(
                window_start=t(f"{s}:00"),
                window_end=t(f"{s}:00") + timedelta(minutes=5),
                active_users=n,
                batch_id=0,
            )
            for s, n in expected.items()
        ],
    )
    assert tuple(active.columns) == ACTIVE_USERS_5M.column_names


def test_page_views_and_product_stats_per_minute(
    kafka_frame: Frame, event: Event, dataset_rows: DatasetRows
) -> None:
    url = "https://shop.example.com/p/P1?ref=x"
    frame = kafka_frame(
        [
            event("1", "page_view", "2026-11-27T12:00:01Z", user_id="u1", page_url=url),
            event("2", "page_view", "2026-11-27T12:00:02Z", user_id="u1", page_url=url),
            event("3", "page_view", "2026-11-27T12:00:03Z", user_id="u2", page_url=url),
            event("4", "page_view", "2026-11-27T12:00:04Z", user_id="u2"),  # no URL: no page
            event(
                "5",
                "product_view",
                "2026-11-27T12:00:05Z",
                user_id="u1",
                product_id="P1",
                price=10.0,
            ),
            event(
                "6",
                "add_to_cart",
                "2026-11-27T12:00:06Z",
                user_id="u1",
                product_id="P1",
                quantity=2,
                price=10.0,
            ),
            event(
                "7",
                "purchase",
                "2026-11-27T12:00:07Z",
                user_id="u1",
                product_id="P1",
                quantity=2,
                price=10.0,
            ),
            event(
                "8", "purchase", "2026-11-27T12:00:08Z", user_id="u2", product_id="P1", revenue=7.5
            ),
        ]
    )
    aggregates = transforms.window_aggregates(valid_events(frame))
    m0, m1 = t("12:00:00"), t("12:01:00")
    assertDataFrameEqual(
        dataset_rows(aggregates, PAGE_VIEWS_MINUTE, 5),
        [
            Row(
                window_start=m0,
                window_end=m1,
                page_path="/p/P1",
                views=3,
                unique_visitors=2,
                batch_id=5,
            )
        ],
    )
    stats = dataset_rows(aggregates, PRODUCT_STATS_MINUTE, 5)
    assertDataFrameEqual(
        stats,
        [
            Row(
                window_start=m0,
                window_end=m1,
                product_id="P1",
                views=1,
                add_to_carts=1,
                purchases=2,
                units=3,
                revenue=27.5,
                batch_id=5,
            )
        ],
    )
    assert tuple(stats.columns) == PRODUCT_STATS_MINUTE.column_names


def test_bots_are_kept_as_events_but_left_out_of_aggregates(
    kafka_frame: Frame, event: Event, lake_split: LakeSplit, dataset_rows: DatasetRows
) -> None:
    bot = {"is_bot": True, "device_class": "bot"}
    frame = kafka_frame(
        [
            event("1", "page_view", "2026-11-27T12:00:01Z", user_id="u1"),
            event("2", "page_view", "2026-11-27T12:00:02Z", user_id="crawler", user_agent_info=bot),
        ]
    )
    assert lake_split(frame)[0].count() == 2
    for exclude, expected in ((True, (1, 1)), (False, (2, 2))):
        kept = transforms.without_bots(valid_events(frame), exclude)
        row = dataset_rows(transforms.window_aggregates(kept), EVENT_COUNTS_MINUTE, 0).first()
        assert row is not None and (row["events"], row["unique_users"]) == expected


def test_sessions_split_and_merge_by_the_gap(kafka_frame: Frame, event: Event) -> None:
    site = "https://shop.example.com"
    frame = kafka_frame(
        [
            # u1: 12:00 and 12:20 are 20 min apart (one 30-min session); 13:00 is 40 min
            # after 12:20, so it starts a second one.
            event("1", "page_view", "2026-11-27T12:00:00Z", user_id="u1", page_url=f"{site}/"),
            event(
                "2",
                "product_view",
                "2026-11-27T12:20:00Z",
                user_id="u1",
                product_id="P1",
                page_url=f"{site}/p/P1",
            ),
            event("3", "page_view", "2026-11-27T13:00:00Z", user_id="u1", page_url=f"{site}/c"),
            # u2: 12:00 and 12:45 would be two sessions, but 12:25 bridges them into one.
            event(
                "4", "page_view", "2026-11-27T12:00:00Z", anonymous_id="u2", page_url=f"{site}/a"
            ),
            event(
                "5", "page_view", "2026-11-27T12:45:00Z", anonymous_id="u2", page_url=f"{site}/z"
            ),
            event("6", "product_view", "2026-11-27T12:25:00Z", anonymous_id="u2", product_id="P2"),
            event("7", "product_view", "2026-11-27T12:26:00Z", anonymous_id="u2", product_id="P2"),
            event("8", "purchase", "2026-11-27T12:46:00Z", anonymous_id="u2", revenue=12.5),
        ]
    )
    sessions = transforms.sessions(valid_events(frame), "30 minutes")
    expected = [
        Row(
            session_key=transforms.session_key("u1", t("12:00:00")),
            user_key="u1",
            session_start=t("12:00:00"),
            session_end=t("12:20:00"),
            duration_seconds=1200.0,
            events=2,
            page_views=1,
            products_viewed=1,
            converted=False,
            revenue=0.0,
            entry_page="/",
            exit_page="/p/P1",
        ),
        Row(
            session_key=transforms.session_key("u1", t("13:00:00")),
            user_key="u1",
            session_start=t("13:00:00"),
            session_end=t("13:00:00"),
            duration_seconds=0.0,
            events=1,
            page_views=1,
            products_viewed=0,
            converted=False,
            revenue=0.0,
            entry_page="/c",
            exit_page="/c",
        ),
        Row(
            session_key=transforms.session_key("u2", t("12:00:00")),
            user_key="u2",
            session_start=t("12:00:00"),
            session_end=t("12:46:00"),
            duration_seconds=2760.0,
            events=5,
            page_views=2,
            products_viewed=1,
            converted=True,
            revenue=12.5,
            entry_page="/a",
            exit_page="/z",
        ),
    ]
    assertDataFrameEqual(sessions.drop("max_received_at"), expected)
    assert tuple(sessions.drop("max_received_at").columns) == tuple(
        c for c in SESSIONS.column_names if c != "batch_id"
    )


def test_session_key_is_stable() -> None:
    key = transforms.session_key("u1", datetime(2026, 11, 27, 12, 0))
    assert key == transforms.session_key("u1", datetime(2026, 11, 27, 12, 0))
    assert key != transforms.session_key("u1", datetime(2026, 11, 27, 12, 0, 1))
    assert len(key) == 32


def test_session_key_matches_the_spark_expression(spark: SparkSession) -> None:
    frame = spark.sql(
        "SELECT 'u1' AS user_key, to_timestamp('2026-11-27 12:00:00.123456') AS start"
    )
    [row] = frame.select(
        transforms._session_key(frame["user_key"], frame["start"]).alias("key")
    ).collect()
    assert row["key"] == transforms.session_key("u1", datetime(2026, 11, 27, 12, 0, 0, 123456))


def test_numeric_bounds_come_from_the_shared_schema() -> None:
    from clickstream_common.schema import EnrichedEvent

    assert transforms.numeric_bounds(EnrichedEvent, "quantity") == (0.0, 1_000_000.0)
    assert transforms.numeric_bounds(EnrichedEvent, "revenue") == (-1e12, 1e12)


def test_spark_conf_for_local_and_kubernetes() -> None:
    local = spark_conf(
        Settings(s3_endpoint_url="http://127.0.0.1:9000", processor_spark_jars="a.jar")
    )
    assert local["spark.master"] == "local[2]"
    assert local["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert local["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert local["spark.jars"] == "a.jar"
    assert local["spark.ui.prometheus.enabled"] == "true"
    assert local["spark.metrics.conf.*.sink.prometheusServlet.class"].endswith("PrometheusServlet")
    assert "RocksDB" in local["spark.sql.streaming.stateStore.providerClass"]
    # Huge generated methods compiled, in the driver (local mode) and the executors.
    assert "-XX:-DontCompileHugeMethods" in local["spark.driver.extraJavaOptions"]
    assert local["spark.executor.extraJavaOptions"] == local["spark.driver.extraJavaOptions"]
    k8s = spark_conf(
        Settings(
            processor_spark_master="k8s://https://kubernetes.default.svc",
            processor_executor_image="img:1",
            processor_driver_host="drv",
            processor_executor_service_account="spark",
            processor_driver_pod_name="driver-0",
            processor_executor_pod_template="/etc/t.yaml",
        )
    )
    assert k8s["spark.submit.deployMode"] == "client"
    assert k8s["spark.kubernetes.container.image"] == "img:1"
    assert k8s["spark.driver.host"] == "drv"
    assert k8s["spark.kubernetes.authenticate.executor.serviceAccountName"] == "spark"
    assert k8s["spark.kubernetes.driver.pod.name"] == "driver-0"
    assert k8s["spark.kubernetes.executor.podTemplateFile"] == "/etc/t.yaml"
    assert "WebIdentityToken" in k8s["spark.hadoop.fs.s3a.aws.credentials.provider"]


def test_fair_scheduler_pools_name_each_query_with_its_weight() -> None:
    root = ET.fromstring(fair_scheduler_pools(POOL_WEIGHTS))
    pools = {p.get("name"): int(p.findtext("weight") or 0) for p in root.iter("pool")}
    assert pools == {"lake": 2, "windows": 2, "sessions": 1}
    assert all(p.findtext("schedulingMode") == "FIFO" for p in root.iter("pool"))


def test_a_time_from_any_producer_is_bounded_before_the_watermark(
    kafka_frame: Frame, event: Event
) -> None:
    # A producer that bypasses the collector: a device clock in 2099 and a received_at to
    # match. The bus's record time (14:30) is the reference; a time within the bounds stays.
    wrong = orjson.loads(event("e1", "page_view", "2099-01-01T00:00:00Z", user_id="u1"))
    old = orjson.loads(event("e2", "page_view", "2026-11-01T00:00:00Z", user_id="u2"))
    old["received_at"] = "2026-11-27T14:29:00Z"
    fine = event("e3", "page_view", "2026-11-27T14:29:30Z", user_id="u3")
    frame = kafka_frame([orjson.dumps(wrong), orjson.dumps(old), fine])
    cleaned = transforms.clean_events(transforms.parse_records(frame))
    assertDataFrameEqual(
        cleaned.select("event_id", "event_time", "original_event_time", "event_time_adjusted"),
        [
            Row(
                event_id="e1",
                event_time=t("14:30:00"),
                original_event_time=datetime(2099, 1, 1),
                event_time_adjusted="ahead",
            ),
            Row(
                event_id="e2",
                event_time=t("14:29:00"),
                original_event_time=datetime(2026, 11, 1),
                event_time_adjusted="behind",
            ),
            Row(
                event_id="e3",
                event_time=t("14:29:30"),
                original_event_time=None,
                event_time_adjusted=None,
            ),
        ],
    )
    # The narrow read of the stateful queries bounds alike.
    assertDataFrameEqual(
        valid_events(frame).select("event_id", "event_time"),
        [
            Row(event_id="e1", event_time=t("14:30:00")),
            Row(event_id="e2", event_time=t("14:29:00")),
            Row(event_id="e3", event_time=t("14:29:30")),
        ],
    )


def test_the_collector_s_own_bound_is_kept(kafka_frame: Frame, event: Event) -> None:
    raw = orjson.loads(event("e1", "click", "2026-11-27T12:10:00Z", user_id="u1"))
    raw |= {"original_event_time": "2030-01-01T00:00:00Z", "event_time_adjusted": "ahead"}
    cleaned = transforms.clean_events(transforms.parse_records(kafka_frame([orjson.dumps(raw)])))
    assertDataFrameEqual(
        cleaned.select("event_time", "original_event_time", "event_time_adjusted"),
        [
            Row(
                event_time=t("12:10:00"),
                original_event_time=datetime(2030, 1, 1),
                event_time_adjusted="ahead",
            )
        ],
    )


def test_an_event_id_is_unique_within_its_source(kafka_frame: Frame, event: Event) -> None:
    web = event("same", "page_view", "2026-11-27T12:00:01Z", user_id="u1")
    app = orjson.loads(web) | {"source": "app"}
    frame = kafka_frame([web, web, orjson.dumps(app)])
    deduplicated = transforms.deduplicate(valid_events(frame), "2 minutes")
    assertDataFrameEqual(
        deduplicated.select("source", "event_id"),
        [Row(source="test", event_id="same"), Row(source="app", event_id="same")],
    )


def test_the_ahead_bound_must_stay_below_the_watermark_delay() -> None:
    assert Settings().clock_policy.max_ahead == timedelta(minutes=1)
    with pytest.raises(ValueError, match="PROCESSOR_CLOCK_MAX_AHEAD_SECONDS"):
        Settings(processor_watermark_delay="1 minute", processor_clock_max_ahead_seconds=60)
    assert Settings(processor_watermark_delay="30 seconds", processor_clock_max_ahead_seconds=5)


def test_purchase_revenue_column_matches_the_schema_rule(spark: SparkSession) -> None:
    cases = list(
        itertools.product(
            ("purchase", "page_view", None),
            (None, 12.5, 0.0, -3.0),
            (None, 4.25, 0.0),
            (None, 3, 0),
        )
    )
    frame = spark.createDataFrame(
        cases, "event_type string, revenue double, price double, quantity long"
    )
    got = frame.select("*", transforms.purchase_revenue().alias("earned")).collect()
    assert len(got) == len(cases)
    for row in got:
        expected = purchase_revenue(row.event_type, row.revenue, row.price, row.quantity)
        assert row.earned == expected, row
