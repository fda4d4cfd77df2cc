"""Settings from the environment; the Helm chart sets the same names."""

from __future__ import annotations

from clickstream_common.settings import CommonSettings, S3Settings


class Settings(CommonSettings, S3Settings):
    processor_spark_master: str = "local[2]"
    processor_spark_jars: str = ""
    processor_checkpoint_location: str = "/tmp/clickstream/checkpoints"  # noqa: S108
    processor_watermark_delay: str = "2 minutes"
    processor_trigger_interval: str = "5 seconds"
    processor_metrics_host: str = "0.0.0.0"  # noqa: S104  # scraped from other pods
    processor_metrics_port: int = 9091
    processor_starting_offsets: str = "earliest"
    processor_max_offsets_per_trigger: int = 200_000
    processor_shuffle_partitions: int = 4
    processor_driver_memory: str = "1g"
    # Spark on Kubernetes (client mode: this process is the driver, executors are pods).
    processor_k8s_namespace: str = "default"
    processor_executor_instances: int = 2
    processor_executor_image: str = ""
    processor_executor_cores: int = 1
    processor_executor_memory: str = "1g"
    processor_executor_service_account: str = ""
    processor_driver_host: str = ""
    processor_driver_port: int = 7078
    processor_block_manager_port: int = 7079
