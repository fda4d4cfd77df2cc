"""Segment from apps and servers: a mobile batch on `/v1/b` in the shape analytics-kotlin
sends it (gzip, text/plain, the write key only in the body), and `context.ip` taken as the
user's address only from a trusted server source."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from tests.trackers.conftest import BROWSER_KEY, MOBILE_KEY, SERVER_KEY, TrackerStack

pytestmark = pytest.mark.platform


def kotlin_context(device_id: str) -> dict[str, Any]:
    """What analytics-kotlin's Android plugins put in every event's context."""
    return {
        "app": {"name": "Shoe Shop", "version": "3.1.0", "namespace": "com.example.shoes",
                "build": "310"},
        "device": {"id": device_id, "manufacturer": "Google", "model": "Pixel 8",
                   "name": "shiba", "type": "android"},
        "library": {"name": "analytics-kotlin", "version": "1.19.1"},
        "locale": "en-US",
        "network": {"wifi": True, "cellular": False, "bluetooth": False},
        "os": {"name": "Android", "version": "14"},
        "screen": {"density": 2.625, "height": 2400, "width": 1080},
        "timezone": "Europe/Berlin",
        "userAgent": "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/AP2A.240805.005)",
        "instanceId": str(uuid.uuid4()),
    }  # fmt: skip


def kotlin_event(kind: str, anonymous_id: str, user_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "messageId": str(uuid.uuid4()),
        "anonymousId": anonymous_id,
        "userId": user_id,  # "" until identify, as the SDK sends it
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "integrations": {},
        "_metadata": {"bundled": [], "unbundled": [], "bundledIds": []},
        **fields,
    }


def test_mobile_batch_in_analytics_kotlin_shape(tracker_stack: TrackerStack) -> None:
    anonymous_id, user_id = str(uuid.uuid4()), f"kt-{uuid.uuid4().hex[:10]}"
    device = f"device-{uuid.uuid4().hex[:8]}"
    context = kotlin_context(device)
    batch = [
        kotlin_event("screen", anonymous_id, "", name="Catalogue", category="", properties={},
                     context=context),
        kotlin_event("track", anonymous_id, "", event="Product Viewed",
                     properties={"product_id": "shoe-7", "price": 99.0}, context=context),
        kotlin_event("identify", anonymous_id, user_id, traits={"email": "kt@example.com"},
                     context=context),
        kotlin_event("track", anonymous_id, user_id, event="Order Completed",
                     properties={"order_id": f"o-{user_id}", "revenue": 99.0, "currency": "USD"},
                     context=context),
    ]  # fmt: skip
    # The file analytics-kotlin stores and uploads as it is.
    body = orjson.dumps(
        {
            "batch": batch,
            "sentAt": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "writeKey": MOBILE_KEY,
        }
    )
    answer = httpx.post(
        f"{tracker_stack.ingest_url}/v1/b",
        content=gzip.compress(body),
        headers={
            "Content-Type": "text/plain",
            "Content-Encoding": "gzip",
            "User-Agent": "analytics-kotlin/1.19.1",
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"success": True, "accepted": 4, "rejected": []}

    events = tracker_stack.wait_for_events("anonymous_id = %s", anonymous_id, count=4)
    assert {e["event_id"] for e in events} == {m["messageId"] for m in batch}
    by_type = {e["event_type"]: e for e in events}
    assert set(by_type) == {"screen_view", "product_view", "identify", "purchase"}
    assert by_type["screen_view"]["user_id"] is None  # "" is no user id
    assert by_type["purchase"]["user_id"] == user_id
    assert {e["source"] for e in events} == {"mobile"}
    screen = by_type["screen_view"]
    assert (screen["context_os_name"], screen["context_device_model"]) == ("Android", "Pixel 8")
    assert screen["raw_context"]["device"]["id"] == device  # kept whole
    assert screen["raw_context"]["network"] == {"wifi": True, "cellular": False, "bluetooth": False}
    assert tracker_stack.identity(anonymous_id)["user_id"] == user_id


@pytest.mark.parametrize(
    ("key", "expected_ip"),
    [(SERVER_KEY, "198.51.100.0"), (BROWSER_KEY, "127.0.0.0")],
)
def test_context_ip_counts_only_from_a_trusted_server_source(
    tracker_stack: TrackerStack, key: str, expected_ip: str
) -> None:
    user_id = f"ip-{uuid.uuid4().hex[:10]}"
    message = {
        "type": "track",
        "event": "Report Downloaded",
        "userId": user_id,
        "messageId": str(uuid.uuid4()),
        "context": {"ip": "198.51.100.77", "library": {"name": "analytics-python"}},
    }
    answer = httpx.post(
        f"{tracker_stack.ingest_url}/v1/batch",
        json={"batch": [message]},
        auth=(key, ""),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    (event,) = tracker_stack.wait_for_events("user_id = %s", user_id, count=1)
    # Cut to its /24 like every address; the request's own address otherwise.
    assert event["client_ip"] == expected_ip
    assert event["raw_context"] == {"library": {"name": "analytics-python"}}  # no address kept
