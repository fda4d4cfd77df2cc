"""The recommender's online state in Redis: updates (one Lua script per batch, atomic with
the batch's offsets) and the reads behind the API (ranking is pure Python on their answers).

Keys, under a prefix (`rec:` by default):
* `trending` (sorted set): forward-decayed views and add-to-carts, origin in `trending:t0`;
* `coview:<product>` / `cobuy:<product>` (sorted sets): products viewed in the same session /
  put in the same cart, with counts; the `neighbours` strongest kept;
* `session:<session>:views|cart` (lists, expire after the session gap);
* `user:<user>:views` (list): the user's most recent distinct product views, newest first;
* `offsets` (hash): the next Kafka offset of each partition already applied.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import orjson
import redis.asyncio as aioredis

from recommender.config import Settings

_SCRIPT = resources.files("recommender").joinpath("update.lua").read_text()


@dataclass(frozen=True)
class Item:
    product_id: str
    score: float
    reason: str


def event_row(record: dict[str, Any], partition: str, offset: int) -> list[Any] | None:
    """What the state needs of an event: [unix time, user, session, type, product,
    partition, offset, category or false]; None for events that change no recommendation."""
    event_type = record.get("event_type")
    product = record.get("product_id")
    if event_type not in ("product_view", "add_to_cart") or not product:
        return None
    user = record.get("user_id") or record.get("anonymous_id")
    if not user:
        return None
    try:
        received = datetime.fromisoformat(str(record["received_at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    session = record.get("session_id") or f"user:{user}"
    properties = record.get("properties")
    category = properties.get("category") if isinstance(properties, dict) else None
    if not isinstance(category, str) or len(category) > 64:
        category = None  # names Redis keys: bounded
    return [
        received.timestamp(),
        str(user),
        str(session),
        event_type,
        str(product),
        partition,
        offset,
        category or False,
    ]


# How the next product a shopper looks at is chosen, roughly: mostly within the categories
# they keep coming back to, sometimes among whatever is popular, and partly what others viewed
# beside the products they just saw. Shares of the final score (figures: docs/benchmarks.md).
CATEGORY_SHARE = 0.6
POPULAR_SHARE = 0.25
CO_OCCURRENCE_SHARE = 0.15


def _shares(pairs: list[tuple[str, float]]) -> dict[str, float]:
    total = sum(max(v, 0.0) for _, v in pairs)
    return {p: max(v, 0.0) / total for p, v in pairs} if total > 0 else {}


def rank_for_user(
    recent: list[str],
    neighbours: list[tuple[list[tuple[str, float]], list[tuple[str, float]]]],
    trending: list[tuple[str, float]],
    limit: int,
    exclude_seen: bool = True,
    popularity: dict[str, float] | None = None,
    tastes: list[tuple[str, float]] | None = None,
    category_tops: dict[str, list[tuple[str, float]]] | None = None,
) -> list[Item]:
    """Pure (tested on static data). A mixture of three estimates of what the user looks at
    next, each a probability over products:

    * by category: the user's categories (share of their views, smoothed) times each
      category's trending products (share of the category's recent views);
    * by popularity: the trending products' share;
    * by co-occurrence: products co-viewed and co-bought (x2) with the user's recent views,
      newest views weighing most (x0.8 per step back), each count divided by the square root
      of the product's popularity so best sellers seen with everything do not crowd out what
      is specific to the viewed product.

    Without category or co-occurrence data the mixture is the trending list. Products the
    user viewed lately are left out.
    """
    popularity = popularity or {}
    seen = set(recent) if exclude_seen else set()
    scores: dict[str, float] = {}
    parts: dict[str, dict[str, float]] = {}

    def add(estimate: dict[str, float], share: float, reason: str) -> None:
        for product, probability in estimate.items():
            if product in seen:
                continue
            gain = share * probability
            scores[product] = scores.get(product, 0.0) + gain
            reasons = parts.setdefault(product, {})
            reasons[reason] = reasons.get(reason, 0.0) + gain

    views = sum(w for _, w in tastes or [])
    if views > 0:
        by_category: dict[str, float] = {}
        for category, weight in tastes or []:
            # One pseudo-view per category seen keeps a single view from deciding alone.
            affinity = weight / (views + 1.0)
            for product, share in _shares((category_tops or {}).get(category, [])).items():
                by_category[product] = by_category.get(product, 0.0) + affinity * share
        add(by_category, CATEGORY_SHARE, "your_categories")
    co_occurrence: dict[str, dict[str, float]] = {"co_viewed": {}, "co_bought": {}}
    for step, (viewed, bought) in enumerate(neighbours):
        for pairs, reason, weight in ((viewed, "co_viewed", 1.0), (bought, "co_bought", 2.0)):
            found = co_occurrence[reason]
            for product, count in pairs:
                lifted = count / math.sqrt(max(popularity.get(product, 1.0), 1.0))
                found[product] = found.get(product, 0.0) + 0.8**step * weight * lifted
    total = sum(v for found in co_occurrence.values() for v in found.values())
    if total > 0:
        for reason, found in co_occurrence.items():
            add({p: v / total for p, v in found.items()}, CO_OCCURRENCE_SHARE, reason)
    if scores:
        add(_shares(trending), POPULAR_SHARE, "trending")
    ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]
    items = [
        Item(p, round(score, 6), max(parts[p].items(), key=lambda kv: kv[1])[0])
        for p, score in ranked
    ]
    return items + fill_trending(trending, {i.product_id for i in items} | seen, limit - len(items))


def fill_trending(trending: list[tuple[str, float]], taken: set[str], count: int) -> list[Item]:
    out: list[Item] = []
    for product, score in trending:
        if len(out) >= count:
            break
        if product not in taken:
            out.append(Item(product, round(score, 6), "trending"))
    return out


class State:
    def __init__(self, settings: Settings, client: aioredis.Redis | None = None) -> None:
        self.settings = settings
        self.prefix = settings.recommender_key_prefix
        self.redis: aioredis.Redis = client or aioredis.from_url(
            settings.recommender_redis_url.get_secret_value(), decode_responses=True
        )
        self._script = self.redis.register_script(_SCRIPT)

    async def close(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def apply(self, events: list[list[Any]], offsets: dict[str, int]) -> int:
        s = self.settings
        batch = orjson.dumps({"events": events, "offsets": offsets}).decode()
        applied = await self._script(
            args=[
                batch,
                self.prefix,
                s.recommender_trending_half_life_seconds,
                s.recommender_session_gap_seconds,
                s.recommender_user_history,
                s.recommender_user_ttl_seconds,
                s.recommender_neighbours,
            ]
        )
        return int(applied)

    async def offsets(self) -> dict[str, int]:
        saved = await self.redis.hgetall(f"{self.prefix}offsets")
        return {str(k): int(v) for k, v in saved.items()}

    async def trending(self, limit: int, now: float | None = None) -> list[tuple[str, float]]:
        """Top products with their decayed score at `now` (views; add-to-carts count 3)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrevrange(f"{self.prefix}trending", 0, limit - 1, withscores=True)
        pipe.get(f"{self.prefix}trending:t0")
        top, t0 = await pipe.execute()
        return self._decayed(top, t0, now)

    def _decayed(
        self, top: list[Any], t0: Any, now: float | None = None
    ) -> list[tuple[str, float]]:
        if not top or t0 is None:
            return []
        half_life = self.settings.recommender_trending_half_life_seconds
        decay = math.exp(-((now or time.time()) - float(t0)) * math.log(2) / half_life)
        return [(str(p), float(score) * decay) for p, score in top]

    async def neighbours(
        self, products: list[str], limit: int = 50
    ) -> list[tuple[list[tuple[str, float]], list[tuple[str, float]]]]:
        pipe = self.redis.pipeline(transaction=False)
        for product in products:
            pipe.zrevrange(f"{self.prefix}coview:{product}", 0, limit - 1, withscores=True)
            pipe.zrevrange(f"{self.prefix}cobuy:{product}", 0, limit - 1, withscores=True)
        answers = await pipe.execute()
        return [
            (
                [(str(p), float(c)) for p, c in answers[i]],
                [(str(p), float(c)) for p, c in answers[i + 1]],
            )
            for i in range(0, len(answers), 2)
        ]

    async def recent_views(self, user: str, limit: int = 10) -> list[str]:
        return [
            str(p) for p in await self.redis.lrange(f"{self.prefix}user:{user}:views", 0, limit - 1)
        ]

    async def tastes(self, user: str, top: int = 3) -> list[tuple[str, float]]:
        pairs: list[Any] = await self.redis.zrevrange(
            f"{self.prefix}user:{user}:categories", 0, top - 1, withscores=True
        )
        return [(str(c), float(w)) for c, w in pairs]

    async def popularity(self, products: set[str]) -> dict[str, float]:
        if not products:
            return {}
        ordered = sorted(products)
        counts = await self.redis.zmscore(f"{self.prefix}popularity", ordered)
        return {p: float(c or 0.0) for p, c in zip(ordered, counts, strict=True)}

    async def category_tops(
        self, categories: list[str], limit: int
    ) -> dict[str, list[tuple[str, float]]]:
        pipe = self.redis.pipeline(transaction=False)
        for category in categories:
            pipe.zrevrange(f"{self.prefix}category:{category}", 0, limit - 1, withscores=True)
        answers = await pipe.execute()
        return {
            c: [(str(p), float(v)) for p, v in pairs]
            for c, pairs in zip(categories, answers, strict=True)
        }

    async def for_user(self, user: str, limit: int) -> tuple[list[str], list[Item]]:
        """Three round trips: the user's views, tastes and the trending list; then the
        neighbours of the views and the top of the user's categories; then the popularity of
        the candidates."""
        p = self.prefix
        pipe = self.redis.pipeline(transaction=False)
        pipe.lrange(f"{p}user:{user}:views", 0, 9)
        pipe.zrevrange(f"{p}user:{user}:categories", 0, 2, withscores=True)
        pipe.zrevrange(f"{p}trending", 0, 2 * limit + 10, withscores=True)
        pipe.get(f"{p}trending:t0")
        views, taste_pairs, top, t0 = await pipe.execute()
        recent = [str(v) for v in views]
        tastes = [(str(c), float(w)) for c, w in taste_pairs]
        trending = self._decayed(top, t0)
        pipe = self.redis.pipeline(transaction=False)
        for product in recent:
            pipe.zrevrange(f"{p}coview:{product}", 0, 49, withscores=True)
            pipe.zrevrange(f"{p}cobuy:{product}", 0, 49, withscores=True)
        for category, _ in tastes:
            pipe.zrevrange(f"{p}category:{category}", 0, limit + len(recent) - 1, withscores=True)
        answers = await pipe.execute() if recent or tastes else []
        neighbours = [
            (
                [(str(q), float(c)) for q, c in answers[i]],
                [(str(q), float(c)) for q, c in answers[i + 1]],
            )
            for i in range(0, 2 * len(recent), 2)
        ]
        tops = {
            category: [(str(q), float(v)) for q, v in answers[2 * len(recent) + j]]
            for j, (category, _) in enumerate(tastes)
        }
        candidates = {q for viewed, bought in neighbours for q, _ in viewed + bought}
        popularity = await self.popularity(candidates)
        items = rank_for_user(recent, neighbours, trending, limit, True, popularity, tastes, tops)
        return recent, items

    async def similar(self, product: str, limit: int) -> list[Item]:
        [(viewed, bought)] = await self.neighbours([product], limit * 2)
        items = rank_for_user([product], [(viewed, bought)], [], limit)
        if len(items) < limit:
            trending = await self.trending(limit * 2)
            taken = {i.product_id for i in items} | {product}
            items += fill_trending(trending, taken, limit - len(items))
        return items
