"""Settings from the environment; the Helm chart sets the same names (docs/contracts.md)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import SecretStr

from clickstream_common.settings import CommonSettings


class Settings(CommonSettings):
    recommender_host: str = "0.0.0.0"  # noqa: S104  # behind a Service in Kubernetes
    recommender_port: int = 8080
    recommender_redis_url: SecretStr = SecretStr("redis://127.0.0.1:16379/0")
    recommender_key_prefix: str = "rec:"
    # Keys that may read recommendations: a JSON list. Empty: every request is refused.
    recommender_read_keys: list[SecretStr] = []
    recommender_consumer_group: str = "recommender"
    # false: API only (read replicas scaled apart from the one that keeps the state fresh).
    recommender_consume: bool = True
    # Redis lost its state (or a first start): rebuild from this many hours of the topic.
    recommender_rebuild_hours: float = 168.0
    recommender_trending_half_life_seconds: float = 1800.0
    recommender_session_gap_seconds: int = 1800
    recommender_user_history: int = 20
    recommender_user_ttl_seconds: int = 30 * 86400
    recommender_neighbours: int = 100  # co-viewed/co-bought kept per product
    recommender_batch_records: int = 500
    recommender_default_limit: int = 10


@lru_cache
def get_settings() -> Settings:
    return Settings()
