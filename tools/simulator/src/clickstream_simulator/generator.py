"""Seeded generation of realistic shopper sessions.

A session is a visitor arriving from a referrer (search engine, social, newsletter with UTM
parameters, or direct), browsing pages, searching, viewing products, and sometimes adding to
cart, checking out and purchasing. The same seed always gives the same events.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

SITE = "https://shop.example.com"
CATEGORIES = ("shoes", "jackets", "bags", "watches", "shirts", "hats", "socks", "sunglasses")
SEARCH_TERMS = (
    "running shoes",
    "rain jacket",
    "leather bag",
    "smart watch",
    "linen shirt",
    "wool hat",
    "gift ideas",
    "sale",
    "sneakers",
    "backpack",
)
REFERRERS: tuple[tuple[str | None, dict[str, str] | None, float], ...] = (
    (None, None, 0.30),
    ("https://www.google.com/", None, 0.30),
    ("https://www.bing.com/", None, 0.05),
    (
        "https://www.facebook.com/",
        {"utm_source": "facebook", "utm_medium": "social", "utm_campaign": "autumn_sale"},
        0.15,
    ),
    (
        "https://mail.example.net/",
        {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "weekly_picks"},
        0.10,
    ),
    (
        "https://www.instagram.com/",
        {"utm_source": "instagram", "utm_medium": "social", "utm_campaign": "influencer"},
        0.10,
    ),
)
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
)
LOCALES = ("en-US", "en-GB", "de-DE", "fr-FR", "nl-NL")


@dataclass(frozen=True)
class Product:
    product_id: str
    category: str
    price: float


@dataclass(frozen=True)
class Visitor:
    anonymous_id: str
    user_id: str | None
    user_agent: str
    locale: str


class ClickstreamGenerator:
    """Makes sessions of events; every random choice comes from one seeded generator.

    `taste` > 0 gives shoppers a known preference structure: each visitor has two favourite
    categories, products have a long-tailed popularity, and a share `taste` of the products a
    visitor looks at come from the favourite categories. The recommender's quality is measured
    against it. With `taste` 0 (the default) every product is equally likely and the events
    are the same as before the option existed.
    """

    def __init__(
        self, seed: int = 42, users: int = 500, products: int = 200, taste: float = 0.0
    ) -> None:
        self.rng = random.Random(seed)  # noqa: S311  # reproducible, not secret
        self.taste = taste
        self.products = [
            Product(
                product_id=f"P{i:05d}",
                category=self.rng.choice(CATEGORIES),
                price=round(self.rng.uniform(5, 250), 2),
            )
            for i in range(products)
        ]
        self.visitors = [
            Visitor(
                anonymous_id=self._uuid(),
                # About 40% of visitors are logged in.
                user_id=f"U{i:06d}" if self.rng.random() < 0.4 else None,
                user_agent=self.rng.choice(USER_AGENTS),
                locale=self.rng.choice(LOCALES),
            )
            for i in range(users)
        ]
        # Preferences come from a generator of their own, so the main stream is unchanged.
        prefs = random.Random(seed * 7919 + 1)  # noqa: S311  # reproducible, not secret
        ranks = list(range(products))
        prefs.shuffle(ranks)
        self.popularity = [1.0 / (rank + 1) ** 0.8 for rank in ranks]
        self.favourites: dict[str, tuple[str, ...]] = {
            v.anonymous_id: tuple(prefs.sample(CATEGORIES, 2)) for v in self.visitors
        }
        self._by_category: dict[str, tuple[list[Product], list[float]]] = {}
        for category in CATEGORIES:
            indexes = [i for i, p in enumerate(self.products) if p.category == category]
            self._by_category[category] = (
                [self.products[i] for i in indexes],
                [self.popularity[i] for i in indexes],
            )

    def pick_product(self, visitor: Visitor) -> Product:
        """The next product a visitor looks at (uniform when `taste` is 0)."""
        rng = self.rng
        if self.taste <= 0:
            return rng.choice(self.products)
        if rng.random() < self.taste:
            pool, weights = self._by_category[rng.choice(self.favourites[visitor.anonymous_id])]
            if pool:
                return rng.choices(pool, weights=weights)[0]
        return rng.choices(self.products, weights=self.popularity)[0]

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _think(self) -> timedelta:
        # Seconds between two actions of one visitor: mostly short, sometimes long.
        return timedelta(seconds=min(self.rng.expovariate(1 / 8), 120))

    def session_events(self, start: datetime, focus: Product | None = None) -> list[dict[str, Any]]:
        """One visit, as a list of events with increasing timestamps from `start`.

        `focus`: the visit lands on that product's page first (a shared link)."""
        rng = self.rng
        visitor = rng.choice(self.visitors)
        session_id = self._uuid()
        weights = [w for _, _, w in REFERRERS]
        referrer, utm, _ = rng.choices(REFERRERS, weights=weights)[0]
        landing = f"{SITE}/"
        if utm:
            landing += "?" + "&".join(f"{k}={v}" for k, v in utm.items())
        now = start
        events: list[dict[str, Any]] = []
        cart: list[tuple[Product, int]] = []

        def emit(event_type: str, page_url: str, ref: str | None, **fields: Any) -> None:
            event: dict[str, Any] = {
                "event_id": self._uuid(),
                "event_type": event_type,
                "timestamp": now.isoformat(timespec="milliseconds"),
                "anonymous_id": visitor.anonymous_id,
                "session_id": session_id,
                "page_url": page_url,
                "context": {"user_agent": visitor.user_agent, "locale": visitor.locale},
            }
            if visitor.user_id:
                event["user_id"] = visitor.user_id
            if ref:
                event["referrer"] = ref
            event.update({k: v for k, v in fields.items() if v is not None})
            events.append(event)

        emit("page_view", landing, referrer)
        previous = landing
        for step in range(rng.randint(1, 8)):
            now += self._think()
            action = 1.0 if focus is not None and step == 0 else rng.random()
            if action < 0.2:
                query = rng.choice(SEARCH_TERMS)
                url = f"{SITE}/search?q={query.replace(' ', '+')}"
                emit("search", url, previous, search_query=query)
                emit("page_view", url, previous)
            elif action < 0.35:
                url = f"{SITE}/c/{rng.choice(CATEGORIES)}"
                emit("page_view", url, previous)
            else:
                product = focus if focus is not None and step == 0 else self.pick_product(visitor)
                url = f"{SITE}/p/{product.product_id}"
                emit("page_view", url, previous)
                emit(
                    "product_view",
                    url,
                    previous,
                    product_id=product.product_id,
                    price=product.price,
                    currency="EUR",
                    # Trackers send the category with product views; kept out of the
                    # default (taste 0) events so they stay as they were.
                    properties={"category": product.category} if self.taste > 0 else None,
                )
                if rng.random() < 0.3:
                    now += self._think()
                    quantity = rng.choice((1, 1, 1, 2, 3))
                    cart.append((product, quantity))
                    emit(
                        "add_to_cart",
                        url,
                        previous,
                        product_id=product.product_id,
                        quantity=quantity,
                        price=product.price,
                        currency="EUR",
                    )
            previous = events[-1]["page_url"]
        if cart and rng.random() < 0.6:
            now += self._think()
            total = round(sum(p.price * q for p, q in cart), 2)
            emit("checkout", f"{SITE}/checkout", previous, revenue=total, currency="EUR")
            if rng.random() < 0.7:
                now += self._think()
                emit(
                    "purchase",
                    f"{SITE}/checkout/done",
                    f"{SITE}/checkout",
                    revenue=total,
                    currency="EUR",
                    properties={"order_id": self._uuid(), "items": len(cart)},
                )
        return events

    def events_between(self, start: datetime, end: datetime, count: int) -> list[dict[str, Any]]:
        """About `count` events with timestamps in [start, end), in timestamp order.

        Sessions start uniformly over the span; events past `end` are cut, so the
        result may hold slightly fewer or more events than asked.
        """
        span = (end - start).total_seconds()
        events: list[dict[str, Any]] = []
        while len(events) < count:
            begin = start + timedelta(seconds=self.rng.uniform(0, span))
            events.extend(
                e
                for e in self.session_events(begin)
                if datetime.fromisoformat(e["timestamp"]) < end
            )
        events.sort(key=lambda e: datetime.fromisoformat(e["timestamp"]))
        return events[:count]

    def live(
        self, clock: Iterator[datetime], concurrent_sessions: int = 50
    ) -> Iterator[dict[str, Any]]:
        """An endless stream for real-time mode: interleaved sessions, stamped by `clock`."""
        active: list[list[dict[str, Any]]] = []
        for now in clock:
            while len(active) < concurrent_sessions:
                active.append(self.session_events(now))
            session = self.rng.choice(active)
            event = session.pop(0)
            event["timestamp"] = now.isoformat(timespec="milliseconds")
            if not session:
                active.remove(session)
            yield event
