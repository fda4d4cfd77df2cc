"""Snowplow tracker protocol v2 with the real trackers, unchanged: the browser tracker and its
snowplow_ecommerce plugin (npm) in Chromium on another origin, and the Python tracker
(PyPI) posting and with GET."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest

from tests.trackers.conftest import SNOWPLOW_KEY, Site, TrackerStack

pytestmark = pytest.mark.platform

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Snowplow shop</title>
<script src="snowplow.js"></script>
<script>
  window.shop = async (endpoint, userId) => {
    const sp = SnowplowSDK;
    const tracker = sp.newTracker("sp", endpoint, {
      appId: "shop-web",
      plugins: [sp.SnowplowEcommercePlugin()],
      eventMethod: "post",
    });
    const shoe = { id: "shoe-3", name: "Blue shoe", category: "shoes", price: 70,
                   currency: "EUR" };
    sp.trackPageView();
    sp.trackProductView(shoe);
    sp.trackAddToCart({ products: [{ ...shoe, quantity: 2 }], total_value: 140,
                        currency: "EUR" });
    sp.setUserId(userId);  // logged in from here on
    sp.trackCheckoutStep({ step: 1 });
    sp.trackTransaction({ transaction_id: "o-" + userId, revenue: 140, currency: "EUR",
                          payment_method: "card", products: [{ ...shoe, quantity: 2 }] });
    sp.trackStructEvent({ category: "Media", action: "Play Video", label: "intro", value: 3 });
    sp.trackSelfDescribingEvent({ event: {
      schema: "iglu:com.acme/survey_answered/jsonschema/1-0-0", data: { score: 9 } } });
    sp.flushBuffer();
    return { duid: tracker.getDomainUserId() };
  };
</script></head><body><h1>Shoes</h1></body></html>
"""


def test_browser_tracker_with_the_ecommerce_plugin(
    tracker_stack: TrackerStack, site: Site, page: Any
) -> None:
    user_id = f"sp-{uuid.uuid4().hex[:10]}"
    endpoint = f"{tracker_stack.ingest_url}/snowplow/{SNOWPLOW_KEY}"
    duid = site.run(page, "snowplow.html", PAGE, endpoint, user_id)["duid"]
    events = tracker_stack.wait_for_events("anonymous_id = %s", duid, count=7)
    assert Counter(e["event_type"] for e in events) == {
        "page_view": 1,
        "product_view": 1,
        "add_to_cart": 1,
        "checkout": 1,
        "purchase": 1,
        "play_video": 1,
        "survey_answered": 1,
    }
    assert len({e["event_id"] for e in events}) == len(events) == 7
    by_type = {e["event_type"]: e for e in events}
    assert {e["source"] for e in events} == {"snowplow"}
    assert by_type["page_view"]["page_url"].endswith("/snowplow.html")
    assert by_type["page_view"]["properties"] == {"title": "Snowplow shop"}
    viewed = by_type["product_view"]
    assert (viewed["product_id"], viewed["price"], viewed["currency"]) == ("shoe-3", 70, "EUR")
    added = by_type["add_to_cart"]
    assert (added["product_id"], added["quantity"]) == ("shoe-3", 2)
    bought = by_type["purchase"]
    assert (bought["revenue"], bought["currency"], bought["property_order_id"]) == (
        140,
        "EUR",
        f"o-{user_id}",
    )
    assert by_type["play_video"]["properties"]["category"] == "Media"
    assert by_type["survey_answered"]["properties"]["data"] == {"score": 9}
    # Before login no user id; after it, every event links the cookie id to the user.
    assert {e["user_id"] for e in events if e["event_type"] in ("page_view", "add_to_cart")} == {
        None
    }
    assert bought["user_id"] == user_id
    assert tracker_stack.identity(duid)["user_id"] == user_id
    # The tracker's context entities and the fields no column holds, kept whole.
    raw = by_type["page_view"]["raw_context"]
    assert raw["fields"]["aid"] == "shop-web" and raw["fields"]["p"] == "web"
    assert any("web_page" in c["schema"] for c in raw["contexts"])


@pytest.mark.parametrize("method", ["post", "get"])
def test_python_tracker(tracker_stack: TrackerStack, method: str) -> None:
    from snowplow_tracker import Emitter, SelfDescribingJson, Subject, Tracker
    from snowplow_tracker.events import PageView, SelfDescribing, StructuredEvent

    host = tracker_stack.ingest_url.removeprefix("http://")
    user_id = f"spy-{method}-{uuid.uuid4().hex[:8]}"
    if method == "post":
        # The write key in the endpoint's path: /snowplow/<key>/com.snowplowanalytics...
        emitter = Emitter(f"{host}/snowplow/{SNOWPLOW_KEY}", protocol="http", method="post")
        app_id = "backend"
    else:
        # At the root (GET /i), the app id names the write key.
        emitter = Emitter(host, protocol="http", method="get")
        app_id = SNOWPLOW_KEY
    subject = Subject().set_user_id(user_id).set_domain_user_id(f"d-{user_id}")
    tracker = Tracker(namespace="py", emitters=emitter, app_id=app_id, subject=subject)
    tracker.track(PageView(page_url="https://shop.example/cart", page_title="Cart"))
    tracker.track(StructuredEvent(category="Cart", action="Apply Coupon", label="SPRING"))
    tracker.track(
        SelfDescribing(
            SelfDescribingJson(
                "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1",
                {"targetUrl": "https://shop.example/checkout"},
            )
        )
    )
    tracker.flush()
    events = tracker_stack.wait_for_events("user_id = %s", user_id, count=3)
    assert sorted(e["event_type"] for e in events) == ["apply_coupon", "click", "page_view"]
    assert {e["source"] for e in events} == {"snowplow"}
    assert {e["anonymous_id"] for e in events} == {f"d-{user_id}"}
    page_view = next(e for e in events if e["event_type"] == "page_view")
    assert page_view["page_url"] == "https://shop.example/cart"
    fields = page_view["raw_context"]["fields"]
    if method == "post":
        assert page_view["context_app_name"] == fields["aid"] == "backend"
    else:  # an app id that named the write key is not recorded anywhere
        assert page_view["context_app_name"] is None and "aid" not in fields
