"""Fixtures for the tracker compatibility tests: a stack of their own, the real SDKs.

Every test here sends with a real tracker, unchanged (npm packages bundled for the browser by
`local/bootstrap.d/tracker-sdks.sh`, PyPI packages from a test), through the whole pipeline,
and reads what reached the warehouse. The stack is this directory's own: the journey test's
sessions must close, which needs the first events the stream sees to be that journey's
(back-dated) ones; the shared stack has seen "now" long before.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from clickstream_local.config import DEV_WRITE_KEY, repo_root
from tests.browser import chromium, fresh_page
from tests.conftest import RunningStack, _new_stack, _stop, wait_for

BROWSER_KEY = "sdk-browser"
SERVER_KEY = "sdk-server"  # a trusted server source: context.ip is the user's address
MOBILE_KEY = "sdk-mobile"
SNOWPLOW_KEY = "sdk-snowplow"
CRM_KEY = "sdk-crm"
# The event types of the shop journey both browser pages send (identify, page, a product
# viewed, added and bought), before each page's one custom event.
SHOP_JOURNEY_TYPES = Counter(
    {"identify": 1, "page_view": 1, "product_view": 1, "add_to_cart": 1, "purchase": 1}
)
KEYS: dict[str, Any] = {
    DEV_WRITE_KEY: "web",
    BROWSER_KEY: "browser",
    SERVER_KEY: {"source": "server", "use_context_ip": True},
    MOBILE_KEY: "mobile",
    SNOWPLOW_KEY: "snowplow",
    CRM_KEY: "crm",
}


@dataclass
class Journey:
    """Anonymous browsing, login, purchase: sent first, 50 minutes in the past."""

    anonymous_id: str
    user_id: str
    message_ids: list[str]
    started: datetime


@dataclass
class TrackerStack:
    running: RunningStack
    journey: Journey

    @property
    def ingest_url(self) -> str:
        return self.running.info.ingest_url

    @property
    def dsn(self) -> str:
        return self.running.info.warehouse_dsn

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        with psycopg.connect(self.dsn, row_factory=dict_row) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def events(self, where: str, *params: Any) -> list[dict[str, Any]]:
        return self.query(f"SELECT * FROM analytics.events WHERE {where}", *params)

    def wait_for_events(
        self, where: str, *params: Any, count: int, timeout: float = 240
    ) -> list[dict[str, Any]]:
        """The events matching `where` once `count` of them are in the warehouse."""
        return wait_for(
            lambda: (found := self.events(where, *params)) and len(found) >= count and found,
            timeout=timeout,
            interval=2,
            what=f"{count} events where {where} {params}",
        )

    def identity(self, anonymous_id: str, timeout: float = 240) -> dict[str, Any]:
        rows = wait_for(
            lambda: self.query(
                "SELECT * FROM analytics.identities WHERE anonymous_id = %s", anonymous_id
            ),
            timeout=timeout,
            interval=2,
            what=f"the identity of {anonymous_id}",
        )
        return rows[0]


def send_journey(ingest_url: str) -> Journey:
    """With Segment's Python SDK (server-side calls, time-stamped 50 minutes ago): three
    anonymous page and product views, a login (identify), a purchase; then one event of
    "now" whose time moves the stream's watermark past the journey's sessions."""
    from segment.analytics.client import Client

    anonymous_id, user_id = f"anon-{uuid.uuid4().hex[:10]}", f"user-{uuid.uuid4().hex[:10]}"
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=50)
    errors: list[Any] = []
    client = Client(
        write_key=SERVER_KEY,
        host=ingest_url,
        on_error=lambda error, batch: errors.append(error),
        max_retries=3,
    )
    shop = "https://shop.example"
    known = {"user_id": user_id, "anonymous_id": anonymous_id}
    calls: list[tuple[str, int, dict[str, Any]]] = [
        ("page", 0, {"anonymous_id": anonymous_id, "name": "Home",
                     "properties": {"url": f"{shop}/"}}),
        ("track", 40, {"anonymous_id": anonymous_id, "event": "Product Viewed",
                       "properties": {"product_id": "shoe-1", "price": 80.0,
                                      "url": f"{shop}/p/shoe-1"}}),
        ("page", 90, {"anonymous_id": anonymous_id, "name": "Login",
                      "properties": {"url": f"{shop}/login"}}),
        ("identify", 120, {**known, "traits": {"email": "journey@example.com", "plan": "gold"}}),
        ("track", 180, {**known, "event": "Order Completed",
                        "properties": {"order_id": "o-journey", "revenue": 80.0,
                                       "currency": "EUR"}}),
    ]  # fmt: skip
    ids = []
    try:
        for method, seconds, fields in calls:
            at = started + timedelta(seconds=seconds)
            ids.append(getattr(client, method)(timestamp=at, **fields)[1]["messageId"])
        client.flush()
        # "Now": the stream's watermark passes the journey's sessions (gap 30 minutes).
        client.track(anonymous_id=f"closer-{uuid.uuid4().hex[:8]}", event="Heartbeat")
        client.flush()
    finally:
        client.shutdown()
    assert errors == []
    return Journey(anonymous_id, user_id, ids, started)


@pytest.fixture(scope="session")
def tracker_stack() -> Iterator[TrackerStack]:
    stack, state = _new_stack(
        ("ingest-api", "stream-processor", "warehouse-loader"),
        {"ingest-api": {"INGEST_WRITE_KEYS": json.dumps(KEYS)}},
    )
    try:
        running = RunningStack(stack, stack.connection_info())
        journey = send_journey(running.info.ingest_url)
        yield TrackerStack(running, journey)
    finally:
        _stop(stack, state)


# --- browsers and pages ----------------------------------------------------------------------


def bundles_dir() -> Path:
    cache = os.environ.get("CLICKSTREAM_CACHE_DIR") or str(
        Path(os.environ.get("CLICKSTREAM_STATE_DIR") or repo_root() / ".state") / "cache"
    )
    return Path(cache) / "tracker-sdks" / "dist"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Site:
    """A static site on its own origin (localhost, not the collector's 127.0.0.1)."""

    root: Path
    url: str

    def page(self, name: str, html: str) -> str:
        (self.root / name).write_text(html)
        return f"{self.url}/{name}"

    def run(self, page: Any, name: str, html: str, *args: Any) -> Any:
        """Open `html` as `name` and await the page's own `shop(...args)`."""
        page.goto(self.page(name, html))
        return page.evaluate("(args) => shop(...args)", list(args))


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("site")
    bundles = bundles_dir()
    if not bundles.is_dir():
        pytest.fail(f"SDK bundles missing in {bundles}: run local/bootstrap.d/tracker-sdks.sh")
    for bundle in bundles.glob("*.js"):
        shutil.copy(bundle, root / bundle.name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(root, f"http://localhost:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    with chromium() as running:
        yield running


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    with fresh_page(browser) as tab:
        yield tab
