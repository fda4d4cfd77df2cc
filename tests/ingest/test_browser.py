"""tracker.js in headless Chromium (Playwright): a page view and a click, sent on page hide
(acceptance 3)."""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import chromium, chromium_path, fresh_page
from tests.conftest import wait_for
from tests.ingest.conftest import Collector

pytestmark = [
    pytest.mark.platform,
    pytest.mark.skipif(
        chromium_path() is None, reason="chromium missing: run local/bootstrap.d/ingest-api.sh"
    ),
]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Shoe shop</title>
<script>
  // Test instrumentation: count how the tracker sends (kept in the origin's storage).
  function countCall(name) {{
    localStorage.setItem(name, String(Number(localStorage.getItem(name) || 0) + 1));
  }}
  const beacon = navigator.sendBeacon.bind(navigator);
  navigator.sendBeacon = (url, data) => {{ countCall("test_beacons"); return beacon(url, data); }};
  const fetcher = window.fetch.bind(window);
  window.fetch = (url, init) => {{ countCall("test_fetches"); return fetcher(url, init); }};
</script>
<script async src="{collector}/v1/tracker.js" data-write-key="{key}"
        data-flush-interval="{flush}" data-batch-size="{batch}"></script>
</head><body>
<h1>Red shoes</h1>
<button id="buy" style="width:200px;height:80px"
  onclick="clickstream.track('click', {{element: 'buy', product_id: 'shoe-1'}})">Buy</button>
</body></html>
"""


# The tracker keeps its pending events under cs_q.<page id> in localStorage.
QUEUED_CLICK = """Object.keys(localStorage).filter(k => k.startsWith('cs_q.')).some(
  k => JSON.parse(localStorage.getItem(k)).events.some(e => e.event_type === 'click'))"""


def events_with(collector: Collector, **match: Any) -> list[dict[str, Any]]:
    """The collector's matching records, read on a thread of their own: Playwright's sync API
    keeps an event loop running on the test's thread, and the Kafka reader runs its own."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(collector.events_with, **match).result()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def shop_site(collector: Collector, tmp_path: Path) -> Iterator[str]:
    """A static page on its own localhost origin that loads the collector's tracker."""
    (tmp_path / "shoes.html").write_text(
        PAGE.format(collector=collector.url, key="it-open", flush=0, batch=20)
    )
    # Sends while open, in small batches, with a key limited to 2 events/s.
    (tmp_path / "busy.html").write_text(
        PAGE.format(collector=collector.url, key="it-retry", flush=100, batch=3)
    )
    (tmp_path / "probe.html").write_text("<!doctype html><title>probe</title>")
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def wait_for_tracker(page: Any, what: str) -> None:
    wait_for(
        lambda: page.evaluate("!!(window.clickstream && window.clickstream.loaded)"),
        timeout=30,
        interval=0.2,
        what=what,
    )


def wait_for_events(
    collector: Collector, anonymous_id: str, count: int, what: str, timeout: float
) -> list[dict[str, Any]]:
    """The visitor's events in Kafka once there are at least `count` of them."""
    found: list[dict[str, Any]] = wait_for(
        lambda: (
            (events := events_with(collector, anonymous_id=anonymous_id))
            and len(events) >= count
            and events
        ),
        timeout=timeout,
        interval=0.5,
        what=what,
    )
    return found


def test_page_view_and_click_arrive_once_each_sent_on_page_hide(
    collector: Collector, shop_site: str
) -> None:
    url = f"{shop_site}/shoes.html?utm_source=browser-test"
    with chromium() as browser, fresh_page(browser) as page:
        page.goto(url)
        wait_for_tracker(page, "tracker.js to load")
        anonymous_id = page.evaluate("clickstream.anonymousId()")
        session_id = page.evaluate("clickstream.sessionId()")
        page.click("#buy")
        wait_for(
            lambda: page.evaluate(QUEUED_CLICK),
            timeout=10,
            interval=0.2,
            what="the click to be queued",
        )
        page.wait_for_timeout(1000)  # what the page would send by now, it has sent
        # Held in the page (flush interval 0, batch not full) until the page is hidden.
        assert events_with(collector, anonymous_id=anonymous_id) == []

        # Leaving the page hides it: the tracker hands its queue to sendBeacon.
        page.goto("about:blank")
        arrived = wait_for_events(
            collector, anonymous_id, 2, "the page view and the click in Kafka", timeout=30
        )

        # A second visit (same origin, same storage) is a barrier: anything the first page
        # might still send twice would be sent before this page's own beacon.
        page.goto(url)
        wait_for_tracker(page, "tracker.js to load again")
        assert page.evaluate("clickstream.anonymousId()") == anonymous_id
        assert page.evaluate("clickstream.sessionId()") == session_id  # within 30 minutes
        page.goto("about:blank")
        everything = wait_for_events(collector, anonymous_id, 3, "the second page view", timeout=30)
        # A page of the same origin without the tracker reads the instrumentation's counts.
        page.goto(f"{shop_site}/probe.html")
        wait_for(
            lambda: page.evaluate("document.title") == "probe",
            timeout=30,
            interval=0.2,
            what="the probe page",
        )
        beacons = page.evaluate("Number(localStorage.getItem('test_beacons') || 0)")
        fetches = page.evaluate("Number(localStorage.getItem('test_fetches') || 0)")
        leftovers = page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('cs_q.'))")

    first_visit = [e for e in everything if e["event_id"] in {a["event_id"] for a in arrived}]
    counts = Counter(e["event_type"] for e in everything)
    assert counts == {"page_view": 2, "click": 1}, everything
    assert Counter(e["event_id"] for e in everything).most_common(1)[0][1] == 1
    assert sorted(e["event_type"] for e in first_visit) == ["click", "page_view"]
    view = next(e for e in first_visit if e["event_type"] == "page_view")
    click = next(e for e in first_visit if e["event_type"] == "click")
    assert view["page_url"] == url
    assert view["properties"] == {"title": "Shoe shop"}
    assert view["campaign"] == {"source": "browser-test"}
    assert click["properties"] == {"element": "buy"}
    assert click["product_id"] == "shoe-1"
    assert view["session_id"] == click["session_id"] == session_id
    assert view["source"] == "it-web"
    assert view["sent_at"] and view["context"]["user_agent"]
    assert view["user_agent_info"]["is_bot"] is True  # HeadlessChrome says so itself
    # One beacon per visit, no fetch, and nothing left queued in the browser.
    assert (beacons, fetches, leftovers) == (2, 0, [])


def test_refused_batches_are_retried_with_backoff_and_stored_once(
    collector: Collector, shop_site: str
) -> None:
    clicks = 9
    with chromium() as browser, fresh_page(browser) as page:
        page.goto(f"{shop_site}/busy.html")
        wait_for_tracker(page, "tracker.js to load")
        anonymous_id = page.evaluate("clickstream.anonymousId()")
        for _ in range(clicks):
            page.click("#buy")
        # 10 events at 2 events/s with a burst of 4: some batches get 429 and come back later.
        everything = wait_for_events(
            collector, anonymous_id, clicks + 1, "every event despite the rate limit", timeout=90
        )
        wait_for(
            lambda: page.evaluate(
                "Object.keys(localStorage).filter(k => k.startsWith('cs_q.')).length === 0"
            ),
            timeout=30,
            interval=0.2,
            what="the queue to empty",
        )
        fetches = page.evaluate("Number(localStorage.getItem('test_fetches') || 0)")
    assert Counter(e["event_type"] for e in everything) == {"page_view": 1, "click": clicks}
    assert len({e["event_id"] for e in everything}) == len(everything) == clicks + 1
    assert all(e["source"] == "it-retry" for e in everything)
    # More requests than batches: the refused ones were sent again.
    assert fetches > (clicks + 1 + 2) // 3
    metrics = httpx.get(f"{collector.url}/metrics").text
    assert 'ingest_http_requests_total{method="POST",route="/v1/events",status="429"}' in metrics
