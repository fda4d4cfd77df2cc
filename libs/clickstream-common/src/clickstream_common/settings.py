"""Settings shared by the services; each reads them from the environment (Helm uses the same)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from clickstream_common.kafka_security import KafkaSecuritySettings

# The pipeline's topic and bucket names (docs/contracts.md), written once: the settings
# default to them, and the local platform, the simulator and the benchmarks use them.
EVENTS_TOPIC = "clickstream.events"
DEAD_LETTER_TOPIC = "clickstream.events.dlq"
S3_EVENTS_TOPIC = "clickstream.s3-events"  # the S3 server's object-created notifications
ANOMALIES_TOPIC = "clickstream.anomalies"
LAKE_BUCKET = "clickstream-lake"


class CommonSettings(KafkaSecuritySettings):
    """Kafka (address, topics, connection security) and logging, shared by every service."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    # Kafka bootstrap servers (host:port, comma-separated).
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    # Accepted events, JSON; key = the user key (user id, else anonymous id).
    kafka_events_topic: str = EVENTS_TOPIC
    # Rejected events with their reason.
    kafka_dead_letter_topic: str = DEAD_LETTER_TOPIC
    # Level of the structured JSON logs on stdout.
    log_level: str = "INFO"


class S3Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    # S3-compatible endpoint, e.g. http://127.0.0.1:17070; unset: AWS S3.
    s3_endpoint_url: str | None = None
    # Region of the bucket.
    s3_region: str = "us-east-1"
    # The data lake bucket (raw/, processed/, errors/).
    s3_bucket: str = LAKE_BUCKET
    # Static S3 keys (from a Secret in Kubernetes); unset: the AWS default chain (IRSA).
    aws_access_key_id: str | None = None
    # The secret key of AWS_ACCESS_KEY_ID.
    aws_secret_access_key: SecretStr | None = None

    def boto3_client_kwargs(self) -> dict[str, str | None]:
        """Arguments for `boto3.client("s3", ...)`; no keys means the AWS default chain (IRSA)."""
        secret = self.aws_secret_access_key
        return {
            "endpoint_url": self.s3_endpoint_url,
            "region_name": self.s3_region,
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": secret.get_secret_value() if secret else None,
        }

    def s3_client(self) -> Any:
        """A boto3 S3 client of these settings: the one way every part makes one."""
        import boto3  # each caller's dependency; the library itself needs no boto3

        return boto3.client("s3", **self.boto3_client_kwargs())

    def arrow_filesystem_kwargs(self) -> dict[str, Any]:
        """Arguments for `pyarrow.fs.S3FileSystem(...)`: the same endpoint, region and keys
        (no keys: the AWS SDK's default chain, IRSA included)."""
        kwargs: dict[str, Any] = {"region": self.s3_region}
        if self.s3_endpoint_url:
            endpoint = urlparse(self.s3_endpoint_url)
            kwargs["endpoint_override"] = endpoint.netloc
            kwargs["scheme"] = endpoint.scheme or "https"
        if self.aws_access_key_id and self.aws_secret_access_key:
            kwargs["access_key"] = self.aws_access_key_id
            kwargs["secret_key"] = self.aws_secret_access_key.get_secret_value()
        return kwargs


class KinesisSettings(BaseSettings):
    """Kinesis Data Streams as the bus (INGEST_SINK / PROCESSOR_SOURCE = kinesis; docs/aws.md).

    Credentials come from the AWS default chain (IRSA on EKS, AWS_ACCESS_KEY_ID locally).
    """

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    # The events stream when the bus is Kinesis; partition key = the user key.
    kinesis_stream_name: str = "clickstream-events"
    # The collector's rejected events (the dead-letter topic's counterpart).
    kinesis_dead_letter_stream_name: str = "clickstream-events-dlq"
    # Region of the streams (the chart: s3.region unless kinesis.region is set).
    kinesis_region: str = "us-east-1"
    # Kinesis-compatible endpoint (kinesis-local in `make up BUS=kinesis`); unset: AWS.
    kinesis_endpoint_url: str | None = None
