"""Settings shared by the services; each reads them from the environment (Helm uses the same)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    kafka_events_topic: str = "clickstream.events"
    kafka_dead_letter_topic: str = "clickstream.events.dlq"
    log_level: str = "INFO"


class S3Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_bucket: str = "clickstream-lake"
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
