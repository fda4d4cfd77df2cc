"""Quality against the popularity baseline, on simulated shoppers with known tastes, through
the real update script in a real Redis (a smaller run than docs/benchmarks.md's)."""

from __future__ import annotations

import pytest

from recommender.quality import evaluate

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_personalised_beats_popularity_clearly(redis_url: str) -> None:
    quality = await evaluate(redis_url, seed=2, train_hours=3.0, sessions_per_minute=30.0)
    assert quality.users > 300
    assert quality.hit_rate_personalized >= 1.3 * quality.hit_rate_popularity
    assert quality.hit_rate_personalized - quality.hit_rate_popularity >= 0.05
