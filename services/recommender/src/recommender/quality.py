"""Offline quality: hit-rate@10 of the personalised endpoint against a popularity baseline,
on simulated shoppers with a known preference structure, on a held-out split. Needs the
simulator (a workspace package, not part of the image) and a Redis.

    uv run python -m recommender.quality --redis-url redis://127.0.0.1:16379/15

Shoppers (ClickstreamGenerator with `taste`) have two favourite categories each; products
have a long-tailed popularity. The first `train_hours` of traffic go through the service's own
state update (the Lua script, in batches, as the consumer sends them); then, for every user
who viewed products in training and views a product new to them in the next hour, the first
such product is held out. A hit: it is among the 10 products the endpoint answers at the split
(`State.for_user`). The baseline answers the 10 most popular products (the trending list)
the user has not viewed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from clickstream_simulator.generator import ClickstreamGenerator
from clickstream_simulator.scenario import timeline
from recommender.config import Settings
from recommender.state import State, event_row, fill_trending

START = datetime(2026, 11, 4, 8, tzinfo=UTC)


@dataclass(frozen=True)
class Quality:
    users: int
    hit_rate_personalized: float
    hit_rate_popularity: float
    train_events: int
    seed: int
    taste: float

    @property
    def lift(self) -> float:
        return self.hit_rate_personalized / max(self.hit_rate_popularity, 1e-9)


async def evaluate(
    redis_url: str,
    seed: int = 1,
    taste: float = 0.7,
    train_hours: float = 5.0,
    sessions_per_minute: float = 40.0,
    k: int = 10,
    keep_state: str | None = None,
) -> Quality:
    """`keep_state`: the key prefix to train under and leave in Redis (the benchmark serves
    from it); otherwise a prefix of its own, deleted at the end."""
    settings = Settings(
        recommender_redis_url=SecretStr(redis_url),
        recommender_key_prefix=keep_state or f"quality-{uuid.uuid4().hex[:8]}:",
    )
    state = State(settings)
    split = START + timedelta(hours=train_hours)
    generator = ClickstreamGenerator(seed=seed, users=3000, products=300, taste=taste)
    events = timeline(
        generator,
        START,
        split + timedelta(hours=1),
        sessions_per_minute,
        daily=False,
        seed=seed,
    )
    seen: dict[str, set[str]] = {}
    held_out: dict[str, str] = {}
    batch: list[list[Any]] = []
    trained = 0
    try:
        for offset, event in enumerate(events):
            user = event.get("user_id") or event["anonymous_id"]
            when = datetime.fromisoformat(event["timestamp"])
            if when < split:
                row = event_row({**event, "received_at": event["timestamp"]}, "quality:0", offset)
                if row is None:
                    continue
                if row[3] == "product_view":
                    seen.setdefault(user, set()).add(row[4])
                batch.append(row)
                if len(batch) >= 500:
                    trained += await state.apply(batch, {"quality:0": offset + 1})
                    batch = []
            elif (
                event["event_type"] == "product_view"
                and user in seen
                and user not in held_out
                and event["product_id"] not in seen[user]
            ):
                held_out[user] = event["product_id"]
        if batch:
            trained += await state.apply(batch, {"quality:0": len(batch) + trained})
        popular = await state.trending(k + 50, now=split.timestamp())
        hits = baseline_hits = 0
        for user, product in held_out.items():
            _, items = await state.for_user(user, k)
            hits += product in {i.product_id for i in items}
            baseline = fill_trending(popular, seen[user], k)
            baseline_hits += product in {i.product_id for i in baseline}
    finally:
        if keep_state is None:
            keys = [key async for key in state.redis.scan_iter(f"{state.prefix}*")]
            for i in range(0, len(keys), 1000):
                await state.redis.delete(*keys[i : i + 1000])
        await state.close()
    users = len(held_out)
    return Quality(users, hits / users, baseline_hits / users, trained, seed, taste)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recommender.quality")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--taste", type=float, default=0.7)
    args = parser.parse_args(argv)
    results = [
        asyncio.run(evaluate(args.redis_url, seed=seed, taste=args.taste))
        for seed in range(1, args.seeds + 1)
    ]
    print("| seed | users | hit-rate@10 personalised | hit-rate@10 popularity | lift |")
    print("| --- | --- | --- | --- | --- |")
    for q in results:
        print(
            f"| {q.seed} | {q.users} | {q.hit_rate_personalized:.3f} | "
            f"{q.hit_rate_popularity:.3f} | {q.lift:.2f}x |"
        )
    print(json.dumps([asdict(q) for q in results]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
