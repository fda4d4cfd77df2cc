"""The recommender on the real platform: events through the collector and Kafka into Redis.

* Freshness: a product view appears in that user's recommendations within 5 s of the
  collector's 202 (the issue's target; a deadline, polled).
* The demo: `make demo` prints the trending products and one shopper's recommendations
  (`clickstream_local.demo.recommendations`) from this service.
* Restarts: with Redis intact the consumer resumes at the offsets stored beside the state
  (nothing counted twice); with Redis emptied it rebuilds the same state from the topic.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis

from clickstream_local.config import RECOMMENDER_READ_KEY
from clickstream_local.demo import recommendations as demo_lines
from clickstream_simulator.generator import ClickstreamGenerator
from clickstream_simulator.sender import DeliveryStats, HttpSender, batched
from tests.conftest import StackFactory, wait_for

pytestmark = pytest.mark.platform

FRESHNESS_SECONDS = 5.0
HEADERS = {"Authorization": f"Bearer {RECOMMENDER_READ_KEY}"}


def recommendations(base: str, path: str) -> dict[str, Any]:
    answer = httpx.get(f"{base}/v1/recommendations{path}", headers=HEADERS, timeout=5)
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def relative(answer: dict[str, Any]) -> list[tuple[str, float]]:
    """Trending scores decay with the clock between two reads; their ratios do not (an event
    applied twice would change them)."""
    items = answer["items"]
    top = items[0]["score"]
    return [(i["product_id"], round(i["score"] / top, 4)) for i in items]


def picks(answer: dict[str, Any]) -> tuple[Any, ...]:
    """What an answer recommends (scores that include trending decay with the clock)."""
    items = tuple((i["product_id"], i["reason"]) for i in answer["items"])
    return items, tuple(answer["based_on"]), answer["personalized"]


def test_fresh_views_and_restarts(stack_factory: StackFactory) -> None:
    running = stack_factory(services=("ingest-api", "recommender"))
    stack, info = running.stack, running.info
    config = stack.config
    base = f"http://127.0.0.1:{config.recommender_port}"
    # Shoppers with tastes, so there are co-views and trending products.
    now = datetime.now(UTC)
    events = ClickstreamGenerator(seed=11, users=300, products=60, taste=0.7).events_between(
        now - timedelta(minutes=5), now, 3000
    )
    sender = HttpSender(info.ingest_url, info.write_key)
    try:
        for batch in batched(events, 200):
            sender.send(batch, DeliveryStats())
        views = [e for e in events if e["event_type"] == "product_view"]
        wait_for(
            lambda: len(recommendations(base, "/trending?limit=5")["items"]) == 5,
            timeout=60,
            what="trending products from the first events",
        )

        # Freshness: a new visitor views one product; its recommendations must name it.
        user = f"fresh-{uuid.uuid4().hex[:8]}"
        product = views[0]["product_id"]
        view = {
            "event_type": "product_view",
            "timestamp": datetime.now(UTC).isoformat(),
            "anonymous_id": user,
            "session_id": f"s-{user}",
            "product_id": product,
        }
        sender.send([view], DeliveryStats())
        accepted = time.monotonic()
        fresh = wait_for(
            lambda: product in recommendations(base, f"/users/{user}")["based_on"],
            timeout=FRESHNESS_SECONDS,
            what=f"the view of {product} in {user}'s recommendations",
            interval=0.05,
        )
        print(f"view visible after {time.monotonic() - accepted:.2f}s")
        assert fresh
        mine = recommendations(base, f"/users/{user}")
        assert mine["personalized"] and product not in {i["product_id"] for i in mine["items"]}

        # What `make demo` prints beside the live figures: the trending products, then the
        # personalised picks of the first simulated shopper (U000000, ...) with a history.
        trending, shopper = demo_lines(base)
        top = [i["product_id"] for i in recommendations(base, "/trending?limit=5")["items"]]
        assert trending == "trending now: " + ", ".join(top)
        assert shopper.startswith("for U0000") and "(viewed " in shopper, shopper
    finally:
        sender.close()

    before_trending = recommendations(base, "/trending?limit=10")
    before_user = recommendations(base, f"/users/{user}")
    before_similar = recommendations(base, f"/products/{product}/similar")

    # Restart with Redis intact: resumes at the stored offsets, applies nothing twice.
    service = stack.components["recommender"]
    service.stop()
    service.start()
    assert relative(recommendations(base, "/trending?limit=10")) == relative(before_trending)
    assert picks(recommendations(base, f"/users/{user}")) == picks(before_user)

    # Redis loses everything: the restarted service rebuilds the same state from the topic.
    client = redis.Redis(port=config.redis_port, decode_responses=True)
    before_state = snapshot(client)
    service.stop()
    client.flushall()
    service.start()
    seen: dict[str, Any] = {}

    def rebuilt() -> bool:
        seen["state"] = snapshot(client)
        return seen["state"] == before_state

    try:
        wait_for(rebuilt, timeout=120, what="the state rebuilt from the topic")
    except AssertionError:
        now = seen.get("state", {})
        differ = sorted(
            k for k in set(now) | set(before_state) if now.get(k) != before_state.get(k)
        )
        raise AssertionError(
            f"rebuilt state differs in {len(differ)} keys, e.g. {differ[:5]}"
        ) from None
    assert relative(recommendations(base, "/trending?limit=10")) == relative(before_trending)
    assert {i["product_id"] for i in recommendations(base, f"/users/{user}")["items"]} == {
        i["product_id"] for i in before_user["items"]
    }
    assert picks(recommendations(base, f"/products/{product}/similar")) == picks(before_similar)


def snapshot(client: redis.Redis) -> dict[str, Any]:
    """Every key of the state but the offsets and the decay origin, comparable across a
    rebuild: lists and counts as they are; decayed scores as ratios to the largest of their
    set (the origin differs, and with it the scale), to 9 significant digits."""
    state: dict[str, Any] = {}
    for key in client.scan_iter("rec:*"):
        if key in ("rec:offsets", "rec:trending:t0"):
            continue
        kind = client.type(key)
        if kind == "list":
            state[key] = client.lrange(key, 0, -1)
        elif kind == "set":
            state[key] = sorted(client.smembers(key))
        elif kind == "zset":
            pairs = client.zrange(key, 0, -1, withscores=True)
            decayed = key == "rec:trending" or key.startswith("rec:category:")
            top = max((score for _, score in pairs), default=1.0) if decayed else 1.0
            state[key] = {member: float(f"{score / top:.9g}") for member, score in pairs}
    return state
