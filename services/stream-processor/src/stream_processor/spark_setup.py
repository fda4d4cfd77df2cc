"""SparkSession for both run modes: `local[*]` on one machine, or Spark on Kubernetes."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import quoteattr

from pyspark.sql import SparkSession

from stream_processor.config import Settings

JIT_OPTIONS = "-XX:-DontCompileHugeMethods"


def spark_conf(settings: Settings) -> dict[str, str]:
    """All Spark settings as a plain mapping (pure, so it can be tested without Spark)."""
    conf = {
        "spark.app.name": "clickstream-stream-processor",
        "spark.master": settings.processor_spark_master,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.processor_shuffle_partitions),
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.streaming.stateStore.providerClass": (
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
        ),
        # Changelog checkpointing uploads only the changes of a batch, not a snapshot.
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        # The event cleaning compiles to methods over the JIT's 8,000-byte limit; HotSpot
        # would interpret them. Compiled, the lake's read and clean costs 33 instead of 39 us
        # per event (docs/benchmarks.md). In local mode the executors run in the driver's JVM.
        "spark.driver.extraJavaOptions": JIT_OPTIONS,
        "spark.executor.extraJavaOptions": JIT_OPTIONS,
        # collect_set (exact unique users) is an object aggregate; past 128 keys per task it
        # falls back to sorting. A batch has thousands of (window, product) keys.
        "spark.sql.objectHashAggregate.sortBased.fallbackThreshold": "65536",
        # The queries take turns fairly instead of the lake's big jobs queueing the others.
        "spark.scheduler.mode": "FAIR",
        "spark.driver.memory": settings.processor_driver_memory,
        # What one collect may bring to the driver: explicit, since the batch bound is sized
        # against it (Settings.max_batch_bytes).
        "spark.driver.maxResultSize": str(settings.driver_max_result_bytes),
        # Spark's own metrics as Prometheus text, served by the UI's web server:
        # /metrics/prometheus (driver, streaming queries) and /metrics/executors/prometheus.
        "spark.ui.enabled": "true",
        "spark.ui.port": str(settings.processor_spark_ui_port),
        "spark.ui.prometheus.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.metrics.conf.*.sink.prometheusServlet.class": (
            "org.apache.spark.metrics.sink.PrometheusServlet"
        ),
        "spark.metrics.conf.*.sink.prometheusServlet.path": "/metrics/prometheus",
        "spark.sql.streaming.metricsEnabled": "true",
        # A long-running job: keep the UI's memory of finished work small.
        "spark.ui.retainedJobs": "100",
        "spark.ui.retainedStages": "100",
        "spark.sql.ui.retainedExecutions": "50",
        "spark.sql.streaming.ui.retainedQueries": "10",
        # S3A: any S3-compatible endpoint, path-style when an endpoint is given.
        "spark.hadoop.fs.s3a.endpoint.region": settings.s3_region,
        "spark.hadoop.fs.s3a.fast.upload": "true",
    }
    if settings.processor_spark_jars:
        conf["spark.jars"] = settings.processor_spark_jars
    if settings.s3_endpoint_url:
        conf["spark.hadoop.fs.s3a.endpoint"] = settings.s3_endpoint_url
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(
            settings.s3_endpoint_url.startswith("https")
        ).lower()
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = (
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
        )
        conf["spark.hadoop.fs.s3a.access.key"] = settings.aws_access_key_id
        conf["spark.hadoop.fs.s3a.secret.key"] = settings.aws_secret_access_key.get_secret_value()
    else:
        # No static keys: a web identity token (IRSA on EKS), else the SDK's default chain.
        conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = ",".join(
            (
                "software.amazon.awssdk.auth.credentials.WebIdentityTokenFileCredentialsProvider",
                "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider",
            )
        )
    if settings.processor_spark_master.startswith("k8s://"):
        conf.update(
            {
                "spark.submit.deployMode": "client",
                "spark.kubernetes.namespace": settings.processor_k8s_namespace,
                "spark.kubernetes.container.image": settings.processor_executor_image,
                "spark.executor.instances": str(settings.processor_executor_instances),
                "spark.executor.cores": str(settings.processor_executor_cores),
                "spark.executor.memory": settings.processor_executor_memory,
                "spark.driver.host": settings.processor_driver_host,
                "spark.driver.bindAddress": "0.0.0.0",  # noqa: S104  # executors connect in
                "spark.driver.port": str(settings.processor_driver_port),
                "spark.driver.blockManager.port": str(settings.processor_block_manager_port),
                # Driver and executors authenticate each other with a secret Spark generates
                # per application (handed to the executors in their pod spec), and encrypt
                # their RPC with it: other pods of the cluster cannot join or listen in.
                "spark.authenticate": "true",
                "spark.network.crypto.enabled": "true",
            }
        )
        # The chart owns the driver's headless Service.
        conf["spark.kubernetes.driver.service.deleteOnTermination"] = "false"
        if settings.processor_executor_service_account:
            # In client mode Spark reads the executor key; the generic one is for the driver.
            conf["spark.kubernetes.authenticate.executor.serviceAccountName"] = (
                settings.processor_executor_service_account
            )
        if settings.processor_driver_pod_name:
            conf["spark.kubernetes.driver.pod.name"] = settings.processor_driver_pod_name
        if settings.processor_executor_pod_template:
            conf["spark.kubernetes.executor.podTemplateFile"] = (
                settings.processor_executor_pod_template
            )
    return conf | settings.processor_spark_conf


def fair_scheduler_pools(weights: Mapping[str, int]) -> str:
    """A fair-scheduler allocation file: one pool per query with its weight (pure)."""
    pools = "".join(
        f"<pool name={quoteattr(name)}><schedulingMode>FIFO</schedulingMode>"
        f"<weight>{int(weight)}</weight><minShare>0</minShare></pool>"
        for name, weight in weights.items()
    )
    return f'<?xml version="1.0"?><allocations>{pools}</allocations>'


def build_session(
    settings: Settings,
    pool_weights: Mapping[str, int] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> SparkSession:
    """The job's session; `overrides` replace single Spark settings (benchmarks compare them)."""
    conf = spark_conf(settings) | dict(overrides or {})
    if pool_weights:
        # Spark reads the pools from a file; /tmp is writable (an emptyDir in the chart).
        with tempfile.NamedTemporaryFile(
            "w", prefix="fair-pools-", suffix=".xml", delete=False
        ) as pools:
            pools.write(fair_scheduler_pools(pool_weights))
        conf["spark.scheduler.allocation.file"] = Path(pools.name).as_uri()
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
