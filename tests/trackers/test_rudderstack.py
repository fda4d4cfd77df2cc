"""RudderStack: the JavaScript SDK v3 (npm, unchanged) in Chromium on another origin, loading
its source config from the collector (`configUrl`), once per call over XHR and once with its
beacon queue (`/beacon/v1/batch?writeKey=`); and the Python SDK (rudder-sdk-python)."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.trackers.conftest import BROWSER_KEY, SERVER_KEY, SHOP_JOURNEY_TYPES, Site, TrackerStack

pytestmark = pytest.mark.platform

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Rudder shop</title>
<script src="rudderstack.js"></script>
<script>
  window.shop = (writeKey, collector, options, userId) => new Promise((resolve) => {
    const rudderanalytics = new RudderSDK.RudderAnalytics();
    rudderanalytics.load(writeKey, collector, { configUrl: collector, ...options });
    rudderanalytics.ready(() => {
      rudderanalytics.identify(userId, { email: userId + "@example.com", plan: "basic" });
      rudderanalytics.page("Catalogue", "Shoes");
      rudderanalytics.track("Product Viewed", { product_id: "shoe-2", price: 45 });
      rudderanalytics.track("Product Added", { product_id: "shoe-2", price: 45, quantity: 1 });
      rudderanalytics.track("Order Completed", { order_id: "o-" + userId, revenue: 45 });
      rudderanalytics.track("Review Written", { stars: 5 });
      resolve({ anonymousId: rudderanalytics.getAnonymousId() });
    });
  });
</script></head><body><h1>Shoes</h1></body></html>
"""

EXPECTED_TYPES = SHOP_JOURNEY_TYPES + Counter({"review_written": 1})


def run_shop(page: Any, site: Site, stack: TrackerStack, options: dict[str, Any]) -> Any:
    user_id = f"rud-{uuid.uuid4().hex[:10]}"
    result = site.run(
        page, "rudderstack.html", PAGE, BROWSER_KEY, stack.ingest_url, options, user_id
    )
    return user_id, result["anonymousId"]


def route_requests(stack: TrackerStack, route: str) -> float:
    """Requests the collector answered 200 on a route (its Prometheus counter)."""
    text = httpx.get(f"{stack.ingest_url}/metrics", timeout=10).text
    prefix = f'ingest_http_requests_total{{method="POST",route="{route}",status="200"}} '
    return sum(
        float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix)
    )


def check_delivery(stack: TrackerStack, user_id: str, anonymous_id: str) -> None:
    events = stack.wait_for_events("anonymous_id = %s", anonymous_id, count=6)
    assert Counter(e["event_type"] for e in events) == EXPECTED_TYPES
    assert len({e["event_id"] for e in events}) == 6  # each call once
    assert {e["user_id"] for e in events} == {user_id}
    by_type = {e["event_type"]: e for e in events}
    assert by_type["add_to_cart"]["product_id"] == "shoe-2"
    assert by_type["purchase"]["revenue"] == 45
    assert by_type["page_view"]["properties"]["name"] == "Shoes"
    assert by_type["identify"]["properties"]["traits"]["plan"] == "basic"
    assert by_type["page_view"]["raw_context"]["library"]["name"] == "RudderLabs JavaScript SDK"
    # Rudder's session id (a number) is the event's session.
    assert by_type["page_view"]["session_id"]
    assert stack.identity(anonymous_id)["user_id"] == user_id


def test_source_config_then_one_request_per_call(
    tracker_stack: TrackerStack, site: Site, page: Any
) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    user_id, anonymous_id = run_shop(page, site, tracker_stack, {})
    check_delivery(tracker_stack, user_id, anonymous_id)
    base = tracker_stack.ingest_url
    paths = Counter(u.removeprefix(base).split("?")[0] for u in requests if u.startswith(base))
    assert paths["/sourceConfig/"] == 1
    assert (paths["/v1/identify"], paths["/v1/page"], paths["/v1/track"]) == (1, 1, 4)


def test_beacon_queue_delivers_on_leaving_the_page(
    tracker_stack: TrackerStack, site: Site, page: Any
) -> None:
    before = route_requests(tracker_stack, "/beacon/v1/batch")
    options = {"useBeacon": True, "beaconQueueOptions": {"maxItems": 50, "flushQueueInterval": 500}}
    user_id, anonymous_id = run_shop(page, site, tracker_stack, options)
    check_delivery(tracker_stack, user_id, anonymous_id)
    # Beacons are not visible to the page's request events; the collector counts them.
    assert route_requests(tracker_stack, "/beacon/v1/batch") > before


def test_python_sdk_posts_batches(tracker_stack: TrackerStack) -> None:
    from rudderstack.analytics.client import Client

    user_id = f"rpy-{uuid.uuid4().hex[:10]}"
    errors: list[Any] = []
    client = Client(
        write_key=SERVER_KEY,
        host=tracker_stack.ingest_url,
        gzip=True,
        on_error=lambda error, batch: errors.append(error),
        max_retries=2,
    )
    try:
        client.identify(user_id, {"email": f"{user_id}@example.com", "plan": "team"})
        client.track(user_id, "Product Viewed", {"product_id": "p-9", "price": 12.5})
        client.flush()
    finally:
        client.shutdown()
    assert errors == []
    events = tracker_stack.wait_for_events("user_id = %s", user_id, count=2)
    assert sorted(e["event_type"] for e in events) == ["identify", "product_view"]
    assert {e["source"] for e in events} == {"server"}
