"""The official Segment Python SDK, host pointed at the collector (acceptance 2)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from segment.analytics.client import Client

from tests.ingest.conftest import Collector

pytestmark = pytest.mark.platform


def test_segment_python_sdk_delivers_track_page_and_identify(collector: Collector) -> None:
    user = f"sdk-{uuid.uuid4().hex[:10]}"
    errors: list[Any] = []
    client = Client(
        write_key="it-open",
        host=collector.url,
        gzip=True,
        on_error=lambda error, batch: errors.append(error),
        max_retries=2,
    )
    try:
        _, track = client.track(
            user_id=user,
            event="Product Added",
            properties={"product_id": "p-42", "price": 19.99, "quantity": 2, "currency": "usd"},
            context={"userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0"},
        )
        _, page = client.page(
            user_id=user,
            name="Checkout",
            properties={"url": "https://shop.example/checkout?utm_source=sdk", "title": "Pay"},
        )
        _, identify = client.identify(user_id=user, traits={"email": "a@b.example", "plan": "pro"})
        client.flush()  # blocks until the consumer thread posted the batch
    finally:
        client.shutdown()
    assert errors == []

    found = {e["event_id"]: e for e in collector.events_with(user_id=user)}
    assert set(found) == {track["messageId"], page["messageId"], identify["messageId"]}
    added = found[track["messageId"]]
    assert added["event_type"] == "add_to_cart"
    assert (added["product_id"], added["price"], added["quantity"], added["currency"]) == (
        "p-42",
        19.99,
        2,
        "USD",
    )
    assert added["properties"]["segment_event"] == "Product Added"
    assert added["user_agent_info"]["os_family"] == "Windows"
    viewed = found[page["messageId"]]
    assert viewed["event_type"] == "page_view"
    assert viewed["page_url"] == "https://shop.example/checkout?utm_source=sdk"
    assert viewed["campaign"] == {"source": "sdk"}
    assert viewed["properties"]["name"] == "Checkout"
    identified = found[identify["messageId"]]
    assert identified["event_type"] == "identify"
    assert identified["properties"] == {"traits": {"email": "a@b.example", "plan": "pro"}}
    for event in found.values():
        assert event["source"] == "it-web"
        assert event["sent_at"]  # the SDK's batch-level sentAt
        sent = datetime.fromisoformat(event["timestamp"])
        assert abs(datetime.now(UTC) - sent).total_seconds() < 300
