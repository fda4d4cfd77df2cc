"""The state script and the ranking, against a real Redis; the API with its auth."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from recommender.config import Settings
from recommender.main import create_app
from recommender.state import State

T0 = 1_790_000_000.0
# Async fixtures run in the session's loop (pyproject); the tests must share it.
pytestmark = pytest.mark.asyncio(loop_scope="session")


def settings(redis_url: str, **overrides: object) -> Settings:
    return Settings(
        recommender_redis_url=SecretStr(redis_url),
        recommender_key_prefix=f"t{uuid.uuid4().hex[:8]}:",
        recommender_read_keys=[SecretStr("reader")],
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture
async def state(redis_url: str) -> AsyncIterator[State]:
    s = State(settings(redis_url))
    try:
        yield s
    finally:
        keys = [k async for k in s.redis.scan_iter(f"{s.prefix}*")]
        if keys:
            await s.redis.delete(*keys)
        await s.close()


def view(t: float, user: str, session: str, product: str, offset: int, kind: str = "product_view"):
    return [t, user, session, kind, product, "events:0", offset]


async def test_updates_are_atomic_with_offsets_and_never_applied_twice(state: State) -> None:
    batch = [
        view(T0, "u1", "s1", "P1", 0),
        view(T0 + 1, "u1", "s1", "P2", 1),
        view(T0 + 2, "u1", "s1", "P3", 2, "add_to_cart"),
    ]
    assert await state.apply(batch, {"events:0": 3}) == 3
    assert await state.offsets() == {"events:0": 3}
    # A replay of the same records (a crash before the Kafka commit) changes nothing.
    assert await state.apply(batch, {"events:0": 3}) == 0
    [(viewed, bought)] = await state.neighbours(["P1"])
    assert viewed == [("P2", 1.0)] and bought == []
    assert await state.recent_views("u1") == ["P2", "P1"]
    top = dict(await state.trending(10, now=T0 + 2))
    # Add-to-cart weighs 3 views; decay over 2 s is negligible.
    assert top["P3"] == pytest.approx(3.0, rel=1e-3)
    assert top["P1"] == pytest.approx(1.0, rel=1e-2)


async def test_trending_decays_with_its_half_life(state: State) -> None:
    half_life = state.settings.recommender_trending_half_life_seconds
    old = [view(T0, f"u{i}", f"s{i}", "OLD", i) for i in range(4)]
    new = [view(T0 + 2 * half_life, f"v{i}", f"r{i}", "NEW", 10 + i) for i in range(2)]
    await state.apply(old + new, {"events:0": 12})
    top = await state.trending(2, now=T0 + 2 * half_life)
    # 4 views two half-lives ago weigh as 1 view now; 2 fresh views win.
    assert [p for p, _ in top] == ["NEW", "OLD"]
    assert dict(top)["OLD"] == pytest.approx(1.0, rel=1e-3)
    assert dict(top)["NEW"] == pytest.approx(2.0, rel=1e-3)


async def test_rebase_keeps_the_ranking(state: State) -> None:
    half_life = state.settings.recommender_trending_half_life_seconds
    # Far enough apart that the script rescales the scores to a new origin in between.
    late = T0 + 40 * half_life
    events = [view(T0, "a", "s", "A", 0), view(late, "b", "t", "B", 1)]
    await state.apply(events, {"events:0": 2})
    top = dict(await state.trending(5, now=late))
    assert top["B"] == pytest.approx(1.0, rel=1e-3)
    assert top.get("A", 0.0) < 1e-6


async def test_api_needs_a_read_key_and_answers(redis_url: str) -> None:
    app = create_app(settings(redis_url), consume=False)
    async with app.router.lifespan_context(app):
        state: State = app.state.recommender
        await state.apply(
            [
                view(T0, "u1", "s1", "P1", 0),
                view(T0 + 1, "u1", "s1", "P2", 1),
                view(T0 + 2, "u2", "s2", "P1", 2),
                view(T0 + 3, "u2", "s2", "P3", 3),
            ],
            {"events:0": 4},
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rec") as client:
            assert (await client.get("/v1/recommendations/trending")).status_code == 401
            wrong = {"Authorization": "Bearer nope"}
            assert (
                await client.get("/v1/recommendations/trending", headers=wrong)
            ).status_code == 403
            ok = {"Authorization": "Bearer reader"}
            trending = (await client.get("/v1/recommendations/trending", headers=ok)).json()
            assert trending["items"][0]["product_id"] == "P1"
            similar = (
                await client.get("/v1/recommendations/products/P1/similar", headers=ok)
            ).json()
            assert {i["product_id"] for i in similar["items"][:2]} == {"P2", "P3"}
            # u1 viewed P1 and P2: P3 (viewed with P1 by u2) comes first, personalised.
            mine = (
                await client.get("/v1/recommendations/users/u1", headers={"X-Read-Key": "reader"})
            ).json()
            assert mine["personalized"] is True and mine["based_on"] == ["P2", "P1"]
            first = mine["items"][0]
            assert (first["product_id"], first["reason"]) == ("P3", "co_viewed")
            # A user without history gets the trending products.
            new = (await client.get("/v1/recommendations/users/nobody", headers=ok)).json()
            assert new["personalized"] is False and new["items"][0]["reason"] == "trending"
            bad = await client.get("/v1/recommendations/trending?limit=0", headers=ok)
            assert bad.status_code == 422
            assert (await client.get("/readyz")).status_code == 200
