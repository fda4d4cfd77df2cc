"""Settings from the environment; the Helm chart sets the same names."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from clickstream_common.settings import CommonSettings


class Settings(CommonSettings):
    ingest_host: str = "0.0.0.0"  # noqa: S104  # a collector listens on every interface
    ingest_port: int = 8080
    ingest_write_keys: dict[str, str] = Field(
        default_factory=dict, description="write key -> source name, as a JSON object"
    )
    ingest_publish_timeout_seconds: float = 5.0
    ingest_max_events_per_request: int = 500
    ingest_max_request_bytes: int = 1024 * 1024
    ingest_max_event_bytes: int = 32 * 1024
    ingest_retry_after_seconds: int = 2
    # Clock-skew correction: differences below the tolerance are network delay, above the
    # maximum an absurd clock; neither is folded into the event time.
    ingest_skew_tolerance_seconds: float = 2.0
    ingest_skew_max_seconds: float = 7 * 24 * 3600.0


@lru_cache
def get_settings() -> Settings:
    return Settings()
