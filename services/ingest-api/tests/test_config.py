"""Settings: the write-key forms, per-key defaults, and the limits' own bounds."""

import pytest
from pydantic import ValidationError

from clickstream_common.schema import DEFAULT_CLOCK_POLICY
from ingest_api.config import Settings


def test_write_keys_config_takes_both_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "INGEST_WRITE_KEYS",
        '{"simple": "web", "full": {"source": "shop", "allowed_origins": ["https://a.example"],'
        ' "rate_limit_events_per_second": 10}}',
    )
    monkeypatch.setenv("INGEST_CORS_ALLOWED_ORIGINS", '["https://b.example"]')
    settings = Settings()
    simple, full = settings.ingest_write_keys["simple"], settings.ingest_write_keys["full"]
    assert simple.source == "web" and full.source == "shop"
    assert settings.origins_of(simple) == ("https://b.example",)
    assert settings.origins_of(full) == ("https://a.example",)
    assert settings.rate_of(simple) == (0.0, 0)
    assert settings.rate_of(full) == (10.0, 10)


def test_the_clock_policy_defaults_to_the_schemas() -> None:
    assert Settings().clock_policy == DEFAULT_CLOCK_POLICY
    assert Settings(ingest_clock_max_ahead_seconds=5).clock_policy.max_ahead.total_seconds() == 5


def test_an_event_limit_that_would_not_fit_a_kafka_record_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(ingest_max_event_bytes=600 * 1024)


def test_pod_limits_are_split_between_workers() -> None:
    one = Settings(ingest_workers=0)  # one process serves (or the count is not resolved yet)
    assert one.per_worker(2048) == 2048
    assert Settings(ingest_workers=4).per_worker(2048) == 512
    assert Settings(ingest_workers=3).per_worker(2) == 1  # never zero
