"""SparkSession for both run modes: `local[*]` on one machine, or Spark on Kubernetes."""

from __future__ import annotations

from pyspark.sql import SparkSession

from stream_processor.config import Settings


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
        "spark.driver.memory": settings.processor_driver_memory,
        "spark.ui.enabled": "false",
        "spark.ui.prometheus.enabled": "true",
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
            }
        )
        if settings.processor_executor_service_account:
            conf["spark.kubernetes.authenticate.serviceAccountName"] = (
                settings.processor_executor_service_account
            )
    return conf


def build_session(settings: Settings) -> SparkSession:
    builder = SparkSession.builder
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
