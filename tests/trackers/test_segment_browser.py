"""Segment's analytics-next (npm, unchanged) in Chromium on another origin, pointed at the
collector by its cdnURL alone: once sending each call (`/v1/t`, `/v1/p`, `/v1/i`), once
batching (`/v1/b`). identify, page and four track calls reach `analytics.events` exactly
once each, and the identity map links the visitor's anonymous id to the user."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest

from tests.trackers.conftest import BROWSER_KEY, SHOP_JOURNEY_TYPES, Site, TrackerStack

pytestmark = pytest.mark.platform

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Segment shop</title>
<script src="segment.js"></script>
<script>
  // The page's own code: load the SDK, make six calls, report their message ids.
  window.shop = async (writeKey, cdnURL, options, userId) => {
    const [analytics] = await SegmentSDK.AnalyticsBrowser.load({ writeKey, cdnURL }, options);
    const ids = [];
    const keep = (ctx) => ids.push(ctx.event.messageId);
    keep(await analytics.identify(userId, { email: userId + "@example.com", plan: "pro" }));
    keep(await analytics.page("Shoes"));
    keep(await analytics.track("Product Viewed", { product_id: "shoe-1", price: 59.9 }));
    keep(await analytics.track("Product Added",
      { product_id: "shoe-1", price: 59.9, quantity: 2, currency: "EUR" }));
    keep(await analytics.track("Order Completed",
      { order_id: "o-" + userId, revenue: 119.8, currency: "EUR" }));
    keep(await analytics.track("Newsletter Signed Up", { list: "weekly" }));
    return { ids, anonymousId: analytics.user().anonymousId() };
  };
</script></head><body><h1>Shoes</h1></body></html>
"""

EXPECTED_TYPES = SHOP_JOURNEY_TYPES + Counter({"newsletter_signed_up": 1})


def run_shop(page: Any, site: Site, stack: TrackerStack, options: dict[str, Any]) -> Any:
    user_id = f"seg-{uuid.uuid4().hex[:10]}"
    result = site.run(page, "segment.html", PAGE, BROWSER_KEY, stack.ingest_url, options, user_id)
    return user_id, result["ids"], result["anonymousId"]


def check_delivery(
    stack: TrackerStack, user_id: str, ids: list[str], anonymous_id: str
) -> list[dict[str, Any]]:
    events = stack.wait_for_events("anonymous_id = %s", anonymous_id, count=len(ids))
    assert Counter(e["event_id"] for e in events) == Counter(ids)  # each exactly once
    assert Counter(e["event_type"] for e in events) == EXPECTED_TYPES
    assert {e["source"] for e in events} == {"browser"}
    assert {e["user_id"] for e in events} == {user_id}
    by_type = {e["event_type"]: e for e in events}
    added = by_type["add_to_cart"]
    assert (added["product_id"], added["price"], added["quantity"], added["currency"]) == (
        "shoe-1",
        59.9,
        2,
        "EUR",
    )
    assert by_type["purchase"]["revenue"] == 119.8
    assert by_type["page_view"]["page_url"].endswith("/segment.html")
    # The whole context, as the SDK sent it.
    raw = by_type["page_view"]["raw_context"]
    assert raw["library"]["name"] == "analytics.js" and raw["page"]["title"] == "Segment shop"
    identity = stack.identity(anonymous_id)
    assert identity["user_id"] == user_id
    return events


def test_settings_from_the_cdn_url_then_one_request_per_call(
    tracker_stack: TrackerStack, site: Site, page: Any
) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    user_id, ids, anonymous_id = run_shop(page, site, tracker_stack, {})
    check_delivery(tracker_stack, user_id, ids, anonymous_id)
    base = tracker_stack.ingest_url
    assert f"{base}/v1/projects/{BROWSER_KEY}/settings" in requests
    posted = Counter(url.removeprefix(base) for url in requests if url.startswith(base + "/v1/"))
    assert posted == {f"/v1/projects/{BROWSER_KEY}/settings": 1, "/v1/i": 1, "/v1/p": 1, "/v1/t": 4}
    assert not [m for m in page.console_messages if "rror" in m], page.console_messages


def test_batching_delivers_through_v1_b(tracker_stack: TrackerStack, site: Site, page: Any) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    batching = {
        "integrations": {
            "Segment.io": {
                "deliveryStrategy": {"strategy": "batching", "config": {"size": 6, "timeout": 500}}
            }
        }
    }
    user_id, ids, anonymous_id = run_shop(page, site, tracker_stack, batching)
    check_delivery(tracker_stack, user_id, ids, anonymous_id)
    base = tracker_stack.ingest_url
    assert [u for u in requests if u.startswith(base) and "/settings" not in u] == [f"{base}/v1/b"]
