import base64

import pytest

from ingest_api.auth import find_key, origin_allowed, presented_key, source_for_key
from ingest_api.config import Settings, WriteKey
from ingest_api.ratelimit import RateLimiter


def test_write_keys_map_to_sources() -> None:
    keys = {"k1": WriteKey(source="web"), "k2": WriteKey(source="ios")}
    assert source_for_key("k2", keys) == "ios"
    assert source_for_key("nope", keys) is None
    assert find_key("k", keys) is None  # a prefix is not a key


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({"authorization": "Bearer abc"}, {}, "abc"),
        ({"authorization": "Basic " + base64.b64encode(b"abc:").decode()}, {}, "abc"),
        ({"authorization": "Basic !!!"}, {}, None),
        ({"x-write-key": "abc"}, {}, "abc"),
        ({}, {"write_key": "abc"}, "abc"),
        ({}, {}, None),
    ],
)
def test_presented_key(headers: dict[str, str], query: dict[str, str], expected: str) -> None:
    assert presented_key(headers, query) == expected


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
    assert origin_allowed("https://a.example/", ("https://a.example",))
    assert not origin_allowed("https://evil.example", ("https://a.example",))
    assert origin_allowed("https://any.example", ("*",))


def test_rate_limit_refills_and_names_the_wait() -> None:
    now = [100.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert limiter.retry_after("k", rate=10, burst=20, cost=15) == 0
    assert limiter.retry_after("k", rate=10, burst=20, cost=10) == 1  # 5 left, 5 missing
    now[0] += 0.5
    assert limiter.retry_after("k", rate=10, burst=20, cost=10) == 0
    assert limiter.retry_after("other", rate=10, burst=20, cost=20) == 0  # keys are separate
    assert limiter.retry_after("k", rate=0, burst=0, cost=10**6) == 0  # 0 = unlimited


def test_a_batch_larger_than_the_burst_passes_a_full_bucket_and_leaves_debt() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert limiter.retry_after("k", rate=10, burst=10, cost=50) == 0
    assert limiter.retry_after("k", rate=10, burst=10, cost=1) == 5  # 40 in debt, then 1


def test_cached_partitioner_matches_kafkas_default() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    from ingest_api.publisher import partition_for

    partitions = list(range(6))
    for key in (b"u-1", b"anonymous-2", "ü".encode(), b""):
        assert partition_for(key, partitions, partitions) == DefaultPartitioner()(
            key, partitions, partitions
        )
