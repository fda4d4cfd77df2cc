"""The collector's own tracker.js in Chromium: identify(userId, traits) sends an identify
event that links the visitor and carries the traits to `analytics.users`; consent decides
what is sent and stored before the visitor opts in, and after they opt out."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.trackers.conftest import BROWSER_KEY, Site, TrackerStack

pytestmark = pytest.mark.platform

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Tracker shop</title>
<script>
  // Test instrumentation: every request the page makes, by kind.
  window.sent = { fetch: 0, beacon: 0 };
  const beacon = navigator.sendBeacon.bind(navigator);
  navigator.sendBeacon = (u, d) => { window.sent.beacon += 1; return beacon(u, d); };
  const fetcher = window.fetch.bind(window);
  window.fetch = (u, i) => { window.sent.fetch += 1; return fetcher(u, i); };
</script>
<script async src="COLLECTOR/v1/tracker.js" data-write-key="KEY" data-flush-interval="0"
        data-batch-size="50" CONSENT></script>
</head><body><h1>Shoes</h1></body></html>
"""
LOADED = "!!(window.clickstream && window.clickstream.loaded)"
STORED = "Object.keys(localStorage).filter(k => k.startsWith('cs_')).sort()"


def open_shop(page: Any, site: Site, stack: TrackerStack, name: str, consent: str = "") -> None:
    html = (
        PAGE.replace("COLLECTOR", stack.ingest_url)
        .replace("KEY", BROWSER_KEY)
        .replace("CONSENT", consent)
    )
    page.goto(site.page(name, html))
    wait_for(lambda: page.evaluate(LOADED), timeout=30, interval=0.2, what="tracker.js")


def test_identify_sends_the_traits_and_links_the_visitor(
    tracker_stack: TrackerStack, site: Site, page: Any
) -> None:
    user_id = f"tj-{uuid.uuid4().hex[:10]}"
    open_shop(page, site, tracker_stack, "tracker.html")
    anonymous_id = page.evaluate("clickstream.anonymousId()")
    identify_id = page.evaluate(
        f"clickstream.identify({user_id!r}, {{plan: 'pro', email: 'tj@example.com'}})"
    )
    page.evaluate("clickstream.track('purchase', {revenue: 25, currency: 'EUR'})")
    page.evaluate("clickstream.flush()")
    events = tracker_stack.wait_for_events("anonymous_id = %s", anonymous_id, count=3)
    assert Counter(e["event_type"] for e in events) == {
        "page_view": 1,
        "identify": 1,
        "purchase": 1,
    }
    identify = next(e for e in events if e["event_type"] == "identify")
    assert identify["event_id"] == identify_id
    assert identify["user_id"] == user_id
    assert identify["properties"] == {"traits": {"plan": "pro", "email": "tj@example.com"}}
    assert next(e for e in events if e["event_type"] == "page_view")["user_id"] is None
    assert next(e for e in events if e["event_type"] == "purchase")["user_id"] == user_id
    assert tracker_stack.identity(anonymous_id)["user_id"] == user_id
    (user,) = wait_for(
        lambda: tracker_stack.query("SELECT * FROM analytics.users WHERE user_id = %s", user_id),
        timeout=60,
        what="the user's traits",
    )
    assert user["traits"] == {"plan": "pro", "email": "tj@example.com"}


def test_consent_required_sends_and_stores_nothing_until_opt_in(
    tracker_stack: TrackerStack, site: Site, page: Any
) -> None:
    open_shop(page, site, tracker_stack, "required.html", 'data-consent="required"')
    assert page.evaluate("clickstream.consent()") == "unset"
    assert page.evaluate("clickstream.track('click', {element: 'buy'})") is None
    assert page.evaluate("clickstream.identify('nobody', {plan: 'x'})") is None
    page.evaluate("clickstream.flush()")
    assert page.evaluate(STORED) == []
    assert page.evaluate("window.sent") == {"fetch": 0, "beacon": 0}

    page.evaluate("clickstream.optIn()")
    anonymous_id = page.evaluate("clickstream.anonymousId()")
    clicked = page.evaluate("clickstream.track('click', {element: 'buy'})")
    page.evaluate("clickstream.flush()")
    (event,) = tracker_stack.wait_for_events("anonymous_id = %s", anonymous_id, count=1)
    assert (event["event_id"], event["event_type"]) == (clicked, "click")
    assert event["session_id"]
    assert page.evaluate(STORED) == ["cs_aid", "cs_consent", "cs_session"]

    # Opting out drops the stored identifiers, keeps the choice, and stops sending.
    page.evaluate("clickstream.optOut()")
    assert page.evaluate(STORED) == ["cs_consent"]
    assert page.evaluate("clickstream.consent()") == "denied"
    assert page.evaluate("clickstream.track('click', {element: 'again'})") is None
    open_shop(page, site, tracker_stack, "required.html", 'data-consent="required"')
    assert page.evaluate("clickstream.consent()") == "denied"  # remembered
    assert page.evaluate("window.sent") == {"fetch": 0, "beacon": 0}
    assert page.evaluate(STORED) == ["cs_consent"]


def test_anonymous_mode_sends_events_without_identifiers(
    tracker_stack: TrackerStack, site: Site, page: Any
) -> None:
    open_shop(page, site, tracker_stack, "anonymous.html", 'data-consent="anonymous"')
    first = page.evaluate("clickstream.anonymousId()")
    assert page.evaluate("clickstream.identify('someone', {plan: 'x'})") is None
    page.evaluate("clickstream.track('add_to_cart', {product_id: 'shoe-9', price: 10})")
    page.evaluate("clickstream.flush()")
    events = tracker_stack.wait_for_events("anonymous_id = %s", first, count=2)
    assert sorted(e["event_type"] for e in events) == ["add_to_cart", "page_view"]
    assert {(e["user_id"], e["session_id"]) for e in events} == {(None, None)}
    assert page.evaluate(STORED) == []  # nothing kept in the browser
    # The next page is another anonymous visitor: nothing links the two.
    open_shop(page, site, tracker_stack, "anonymous.html", 'data-consent="anonymous"')
    assert page.evaluate("clickstream.anonymousId()") != first
    # Opting in turns on full tracking with stored identifiers.
    page.evaluate("clickstream.optIn()")
    page.evaluate("clickstream.track('click', {element: 'x'})")
    assert "cs_aid" in page.evaluate(STORED)
