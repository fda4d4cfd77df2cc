"""Wait for Kafka before starting the queries: wrong credentials or an unreachable broker give
a clear log line and a not-ready probe, instead of failed queries and a restart loop.

The check runs Kafka's Java AdminClient inside the driver's JVM with exactly the client
properties the Kafka source gets (clickstream_common.kafka_security), so TLS, SASL and
authorisation problems show up here the way the queries would meet them.
"""

from __future__ import annotations

import logging
import threading

from pyspark.sql import SparkSession

from clickstream_common.kafka_security import java_client_properties
from stream_processor.config import Settings

log = logging.getLogger(__name__)


def kafka_problem(spark: SparkSession, settings: Settings, timeout_seconds: int = 15) -> str | None:
    """None if the events topic can be described with the job's settings, else the reason."""
    from py4j.protocol import Py4JJavaError

    jvm = spark.sparkContext._jvm
    assert jvm is not None
    props = jvm.java.util.Properties()
    props.setProperty("bootstrap.servers", settings.kafka_bootstrap_servers)
    props.setProperty("request.timeout.ms", str(timeout_seconds * 1000))
    props.setProperty("default.api.timeout.ms", str(timeout_seconds * 1000))
    for key, value in java_client_properties(settings).items():
        props.setProperty(key, value)
    admin = jvm.org.apache.kafka.clients.admin.Admin.create(props)
    try:
        topics = jvm.java.util.Collections.singletonList(settings.kafka_events_topic)
        admin.describeTopics(topics).allTopicNames().get(
            timeout_seconds, jvm.java.util.concurrent.TimeUnit.SECONDS
        )
        return None
    except Py4JJavaError as exc:
        cause = exc.java_exception
        while cause.getCause() is not None:
            cause = cause.getCause()
        return str(cause.toString())
    finally:
        admin.close()


def wait_for_kafka(
    spark: SparkSession,
    settings: Settings,
    stopping: threading.Event,
    max_delay_seconds: float = 60.0,
) -> bool:
    """Retry with backoff until Kafka answers; False if asked to stop meanwhile."""
    delay = 2.0
    while not stopping.is_set():
        problem = kafka_problem(spark, settings)
        if problem is None:
            return True
        log.error(
            "kafka unavailable: the queries wait (check KAFKA_BOOTSTRAP_SERVERS and the "
            "KAFKA_SECURITY_PROTOCOL/KAFKA_SASL_* credentials)",
            extra={
                "error": problem,
                "bootstrap_servers": settings.kafka_bootstrap_servers,
                "security": settings.describe(),
                "retry_in_seconds": delay,
            },
        )
        stopping.wait(delay)
        delay = min(delay * 2, max_delay_seconds)
    return False
