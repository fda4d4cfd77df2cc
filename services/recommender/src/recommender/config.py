"""Settings from the environment; the Helm chart sets the same names (docs/contracts.md)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import SecretStr

from clickstream_common.settings import CommonSettings


class Settings(CommonSettings):
    # Address to listen on (behind a Service in Kubernetes).
    recommender_host: str = "0.0.0.0"  # noqa: S104
    # HTTP port of the API and /metrics.
    recommender_port: int = 8080
    # Redis holding the state (may carry a password: a secret).
    recommender_redis_url: SecretStr = SecretStr("redis://127.0.0.1:16379/0")
    # Prefix of every Redis key.
    recommender_key_prefix: str = "rec:"
    # Keys that may read recommendations: a JSON list. Empty: every request is refused.
    recommender_read_keys: list[SecretStr] = []
    # Consumer group on the events topic.
    recommender_consumer_group: str = "recommender"
    # false: API only (read replicas scaled apart from the one that keeps the state fresh).
    recommender_consume: bool = True
    # Redis lost its state (or a first start): rebuild from this many hours of the topic.
    recommender_rebuild_hours: float = 168.0
    # Half-life of a view's weight in the trending scores.
    recommender_trending_half_life_seconds: float = 1800.0
    # Inactivity that ends a session (views in one session are co-viewed).
    recommender_session_gap_seconds: int = 1800
    # Recent products kept per user.
    recommender_user_history: int = 20
    # A user's history expires after this long without events.
    recommender_user_ttl_seconds: int = 30 * 86400
    # Co-viewed/co-bought products kept per product.
    recommender_neighbours: int = 100
    # Records read from the topic per batch at most.
    recommender_batch_records: int = 500
    # Recommendations returned when a request names no limit.
    recommender_default_limit: int = 10


@lru_cache
def get_settings() -> Settings:
    return Settings()
