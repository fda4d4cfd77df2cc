"""Every way in, checked by reading the real Kafka topics back (acceptance 1)."""

from __future__ import annotations

import base64
import gzip
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import wait_for
from tests.ingest.conftest import Collector

pytestmark = pytest.mark.platform

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
DESKTOP = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def marker() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def event(anonymous_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_type": "page_view",
        "timestamp": iso(datetime.now(UTC)),
        "anonymous_id": anonymous_id,
        **fields,
    }


def post(collector: Collector, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": "Bearer it-open", "Content-Type": "application/json"}
    headers.update(kwargs.pop("headers", {}))
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(f"{collector.url}{path}", content=content, headers=headers, **kwargs)


def test_native_batch_with_enrichment_and_dead_letters(collector: Collector) -> None:
    who = marker()
    now = datetime.now(UTC)
    slow_clock = now - timedelta(minutes=10)  # the device's clock runs 10 minutes slow
    body = {
        "sent_at": iso(slow_clock),
        "events": [
            event(
                who,
                event_id=f"{who}-0",
                timestamp=iso(slow_clock - timedelta(seconds=30)),
                page_url="https://shop.example/p/1?utm_source=newsletter&utm_medium=email"
                "&utm_campaign=spring&utm_term=shoes&utm_content=hero",
                referrer="https://www.google.com/search?q=shoes",
                session_id="s-1",
                context={"user_agent": IPHONE, "locale": "en-GB"},
            ),
            event(
                who,
                event_id=f"{who}-1",
                event_type="purchase",
                user_id=f"{who}-user",
                product_id="p-1",
                quantity=2,
                price=9.5,
                revenue=19.0,
                currency="EUR",
                properties={"order_id": "o-1"},
            ),
            {"event_type": "Not Snake", "timestamp": "yesterday", "anonymous_id": who},
            event(who, currency="euro"),
            event(who, timestamp=iso(slow_clock + timedelta(days=1))),  # in the future
        ],
    }
    response = post(collector, "/v1/events", body, headers={"X-Forwarded-For": "198.51.100.23"})
    assert response.status_code == 202, response.text
    result = response.json()
    assert result["accepted"] == 3
    assert [(r["index"], r["code"]) for r in result["rejected"]] == [(2, "invalid"), (3, "invalid")]
    assert "event_type" in result["rejected"][0]["reason"]
    assert "timestamp" in result["rejected"][0]["reason"]
    assert "currency" in result["rejected"][1]["reason"]
    request_id = response.headers["x-request-id"]

    found = {e["event_id"]: e for e in collector.events_with(anonymous_id=who)}
    assert len(found) == 3
    first, purchase = found[f"{who}-0"], found[f"{who}-1"]
    # The client's fields as sent ...
    assert first["timestamp"] == body["events"][0]["timestamp"]
    assert first["page_url"] == body["events"][0]["page_url"]
    assert first["context"] == {"user_agent": IPHONE, "locale": "en-GB"}
    assert first["session_id"] == "s-1"
    # ... and the collector's alongside.
    assert first["source"] == "it-web"
    assert first["sent_at"] == body["sent_at"]
    received = datetime.fromisoformat(first["received_at"])
    assert abs(received - now) < timedelta(minutes=1)
    skew = datetime.fromisoformat(first["event_time"]) - datetime.fromisoformat(first["timestamp"])
    assert timedelta(minutes=9) < skew < timedelta(minutes=11)
    assert first["future_dated"] is False
    assert first["client_ip"] == "198.51.100.0"  # from the trusted proxy's header, truncated
    assert first["campaign"] == {
        "source": "newsletter",
        "medium": "email",
        "name": "spring",
        "term": "shoes",
        "content": "hero",
    }
    assert first["referrer_host"] == "www.google.com"
    assert first["user_agent_info"]["device_class"] == "mobile"
    assert first["user_agent_info"]["os_family"] == "iOS"
    assert first["user_agent_info"]["is_bot"] is False
    assert purchase | {"event_time": None} == purchase | {
        "event_type": "purchase",
        "user_id": f"{who}-user",
        "product_id": "p-1",
        "quantity": 2,
        "price": 9.5,
        "revenue": 19.0,
        "currency": "EUR",
        "properties": {"order_id": "o-1"},
        "event_time": None,
    }
    future = [e for e in found.values() if e["event_id"] not in (f"{who}-0", f"{who}-1")]
    assert future[0]["future_dated"] is True

    # Message keys: the user id, else the anonymous id (one user stays in one partition).
    keys = {r.value["event_id"]: r.key for r in collector.events() if r.value["event_id"] in found}
    assert keys[f"{who}-0"] == who.encode()
    assert keys[f"{who}-1"] == f"{who}-user".encode()

    letters = [r.value for r in collector.dead_letters() if r.value["request_id"] == request_id]
    assert sorted(letter["index"] for letter in letters) == [2, 3]
    assert {letter["event"]["anonymous_id"] for letter in letters} == {who}
    assert all(letter["reason"] and letter["source"] == "it-web" for letter in letters)


def test_single_event_object_and_generated_ids(collector: Collector) -> None:
    who = marker()
    response = post(collector, "/v1/events", event(who))
    assert response.status_code == 202
    (found,) = collector.events_with(anonymous_id=who)
    uuid.UUID(found["event_id"])  # generated
    assert "sent_at" not in found
    assert found["event_time"] == found["timestamp"]
    assert found["client_ip"] == "127.0.0.0"


def test_beacon_as_text_plain_with_write_key_in_query(collector: Collector) -> None:
    who = marker()
    body = orjson.dumps({"sent_at": iso(datetime.now(UTC)), "events": [event(who)]})
    response = httpx.post(
        f"{collector.url}/v1/events?write_key=it-open",
        content=body,
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://any.example"},
    )
    assert response.status_code == 202
    assert response.headers["access-control-allow-origin"] == "https://any.example"
    (found,) = collector.events_with(anonymous_id=who)
    assert found["source"] == "it-web"


def test_gzip_body(collector: Collector) -> None:
    who = marker()
    body = gzip.compress(orjson.dumps({"events": [event(who), event(who, event_type="click")]}))
    response = post(collector, "/v1/events", body, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 202
    assert sorted(e["event_type"] for e in collector.events_with(anonymous_id=who)) == [
        "click",
        "page_view",
    ]


def test_pixel(collector: Collector) -> None:
    who = marker()
    response = httpx.get(
        f"{collector.url}/v1/pixel.gif",
        params={
            "write_key": "it-open",
            "anonymous_id": who,
            "event_type": "email_open",
            "page_url": "https://mail.example/?utm_source=crm&utm_campaign=nov",
            "p.list": "vip",
            "cb": "12345",
        },
        headers={"User-Agent": DESKTOP},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content.startswith(b"GIF89a")
    assert "no-store" in response.headers["cache-control"]
    (found,) = collector.events_with(anonymous_id=who)
    assert found["event_type"] == "email_open"
    assert found["properties"] == {"list": "vip"}
    assert found["campaign"] == {"source": "crm", "name": "nov"}
    # A pixel is fetched by the user's own browser or mail client: its UA describes them.
    assert found["user_agent_info"]["device_class"] == "desktop"

    invalid = httpx.get(f"{collector.url}/v1/pixel.gif", params={"write_key": "it-open"})
    assert invalid.status_code == 400
    assert "user_id or anonymous_id" in invalid.json()["message"]


SEGMENT_CALLS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "track",
        {"event": "Product Viewed", "properties": {"product_id": "p-7", "price": 12.5}},
        {"event_type": "product_view", "product_id": "p-7", "price": 12.5},
    ),
    (
        "track",
        {"event": "Products Searched", "properties": {"query": "red shoes"}},
        {"event_type": "search", "search_query": "red shoes"},
    ),
    (
        "page",
        {
            "name": "Home",
            "properties": {"url": "https://shop.example/", "referrer": "https://r.example/"},
        },
        {
            "event_type": "page_view",
            "page_url": "https://shop.example/",
            "referrer_host": "r.example",
        },
    ),
    ("screen", {"name": "Cart"}, {"event_type": "screen_view"}),
    ("identify", {"traits": {"plan": "pro"}}, {"event_type": "identify"}),
    ("group", {"groupId": "g-1", "traits": {"n": 3}}, {"event_type": "group"}),
    ("alias", {"previousId": "old-id"}, {"event_type": "alias"}),
]


@pytest.mark.parametrize(("call", "fields", "expected"), SEGMENT_CALLS)
def test_each_segment_call(
    collector: Collector, call: str, fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    who = marker()
    message_id = f"{who}-m"
    sent = datetime.now(UTC)
    message = {
        "userId": who,
        "messageId": message_id,
        "timestamp": iso(sent - timedelta(seconds=5)),
        "sentAt": iso(sent),
        "context": {"userAgent": IPHONE, "locale": "nl-NL", "library": {"name": "x"}},
        **fields,
    }
    basic = base64.b64encode(b"it-open:").decode()
    response = post(collector, f"/v1/{call}", message, headers={"Authorization": f"Basic {basic}"})
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True
    (found,) = collector.events_with(user_id=who)
    assert found["event_id"] == message_id
    assert found["timestamp"] == message["timestamp"]
    assert found["sent_at"] == message["sentAt"]
    assert found["context"] == {"user_agent": IPHONE, "locale": "nl-NL"}
    assert found["user_agent_info"]["device_class"] == "mobile"
    for key, value in expected.items():
        assert found[key] == value, key


def test_segment_batch_with_body_write_key_and_invalid_messages(collector: Collector) -> None:
    who = marker()
    body = {
        "writeKey": "it-open",
        "sentAt": iso(datetime.now(UTC)),
        "context": {"locale": "fr-FR"},
        "batch": [
            {
                "type": "track",
                "event": "Order Completed",
                "anonymousId": who,
                "messageId": f"{who}-a",
                "properties": {"revenue": 30, "currency": "usd", "order_id": "o-9"},
                "originalTimestamp": iso(datetime.now(UTC)),
            },
            {"type": "track", "event": "Signed Up", "anonymousId": who, "messageId": f"{who}-b"},
            {"type": "teleport", "anonymousId": who},
            {"type": "track", "event": "No Identity"},
        ],
    }
    response = httpx.post(
        f"{collector.url}/v1/batch",
        content=gzip.compress(orjson.dumps(body)),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] == 2
    assert [r["index"] for r in result["rejected"]] == [2, 3]
    found = {e["event_id"]: e for e in collector.events_with(anonymous_id=who)}
    assert found[f"{who}-a"]["event_type"] == "purchase"
    assert found[f"{who}-a"]["revenue"] == 30
    assert found[f"{who}-a"]["currency"] == "USD"
    assert found[f"{who}-a"]["context"] == {"locale": "fr-FR"}
    assert found[f"{who}-b"]["event_type"] == "signed_up"
    assert found[f"{who}-b"]["properties"] == {"segment_event": "Signed Up"}
    letters = [
        r.value for r in collector.dead_letters() if r.value["event"].get("anonymousId") == who
    ]
    assert [letter["reason"] for letter in letters] == [
        "unsupported Segment call type 'teleport'; one of "
        "('track', 'page', 'screen', 'identify', 'group', 'alias')"
    ]


def test_refusals(collector: Collector) -> None:
    url = f"{collector.url}/v1/events"
    good = orjson.dumps(event(marker()))
    cases = [
        (httpx.post(url, content=good), 401, "missing_write_key"),
        (httpx.post(url, content=good, headers={"X-Write-Key": "wrong"}), 401, "unknown_write_key"),
        (post(collector, "/v1/events", b"{not json"), 400, "malformed_json"),
        (
            post(collector, "/v1/events", b"<e/>", headers={"Content-Type": "application/xml"}),
            415,
            "unsupported_media_type",
        ),
        (post(collector, "/v1/events", {"events": [event("x")] * 501}), 413, "too_many_events"),
        (post(collector, "/v1/events", b" " * (1024 * 1024 + 1)), 413, "request_too_large"),
        (
            post(collector, "/v1/events", event("x", properties={"b": "x" * 40_000})),
            413,
            "event_too_large",
        ),
        (post(collector, "/v1/events", {"events": [{"nope": 1}]}), 400, None),
        (
            post(
                collector,
                "/v1/events",
                good,
                headers={"Authorization": "Bearer it-shop", "Origin": "https://evil.example"},
            ),
            403,
            "origin_not_allowed",
        ),
    ]
    for response, status, code in cases:
        assert response.status_code == status, (status, response.text)
        if code:
            assert response.json()["code"] == code
    assert "INGEST_MAX_EVENTS_PER_REQUEST" in cases[4][0].json()["message"]
    assert "1048576 bytes" in cases[5][0].json()["message"]


def test_rate_limit_answers_429_with_retry_after(collector: Collector) -> None:
    who = marker()
    headers = {"Authorization": "Bearer it-limited"}
    first = post(collector, "/v1/events", {"events": [event(who)] * 5}, headers=headers)
    assert first.status_code == 202
    second = post(collector, "/v1/events", {"events": [event(who)] * 3}, headers=headers)
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1
    assert second.json()["code"] == "rate_limited"
    assert len(collector.events_with(anonymous_id=who)) == 5  # nothing of the refused request


def test_cors_per_key(collector: Collector) -> None:
    preflight = httpx.options(
        f"{collector.url}/v1/events?write_key=it-shop",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-write-key",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    assert int(preflight.headers["access-control-max-age"]) >= 600
    assert "X-Write-Key" in preflight.headers["access-control-allow-headers"]
    refused = httpx.options(
        f"{collector.url}/v1/events?write_key=it-shop",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    who = marker()
    allowed = post(
        collector,
        "/v1/events",
        event(who),
        headers={"X-Write-Key": "it-shop", "Authorization": "", "Origin": "https://shop.example"},
    )
    assert allowed.status_code == 202
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    assert collector.events_with(anonymous_id=who)[0]["source"] == "it-shop"


def test_operations_endpoints(collector: Collector) -> None:
    assert httpx.get(f"{collector.url}/healthz").status_code == 200
    assert httpx.get(f"{collector.url}/readyz").json() == {"status": "ready"}
    script = httpx.get(f"{collector.url}/v1/tracker.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("application/javascript")
    assert "sendBeacon" in script.text
    cached = httpx.get(
        f"{collector.url}/v1/tracker.js", headers={"If-None-Match": script.headers["etag"]}
    )
    assert cached.status_code == 304
    document = httpx.get(f"{collector.url}/openapi.json").json()
    assert {"/v1/events", "/v1/batch", "/v1/track", "/v1/pixel.gif", "/v1/tracker.js"} <= set(
        document["paths"]
    )
    metrics = httpx.get(f"{collector.url}/metrics").text
    for name in (
        'ingest_http_requests_total{method="POST",route="/v1/events",status="202"}',
        'ingest_events_accepted_total{event_type="page_view",source="it-web"}',
        'ingest_events_rejected_total{reason="invalid"}',
        "ingest_kafka_publish_duration_seconds_bucket",
        "ingest_batch_events_bucket",
        "ingest_payload_bytes_bucket",
        "ingest_kafka_errors_total",
        "ingest_ready 1.0",
    ):
        assert name in metrics, name
    # Structured logs name the request id: refused requests, and rejected events.
    body = {"events": [event(marker()), {"event_type": "x"}]}
    partly = post(collector, "/v1/events", body, headers={"X-Request-ID": "req-abc-1"})
    assert partly.status_code == 202 and partly.headers["x-request-id"] == "req-abc-1"
    refused = post(collector, "/v1/events", b"{", headers={"X-Request-ID": "req-abc-2"})
    assert refused.status_code == 400 and refused.headers["x-request-id"] == "req-abc-2"

    def logged() -> list[dict[str, Any]]:
        return [
            orjson.loads(line)
            for line in collector.log_path.read_bytes().splitlines()
            if line.startswith(b"{")
        ]

    def both_logged() -> list[dict[str, Any]] | None:
        # The access log line is written once the answer is sent, by whichever worker
        # process served it: the client may read the file first.
        lines = logged()
        rejected = any(
            line.get("request_id") == "req-abc-1" and line["msg"] == "events rejected"
            for line in lines
        )
        refused = any(
            line.get("request_id") == "req-abc-2" and line.get("status") == 400 for line in lines
        )
        return lines if rejected and refused else None

    lines = wait_for(both_logged, timeout=10, interval=0.1, what="both requests in the log")
    # Successful requests are not logged one by one unless INGEST_ACCESS_LOG is set.
    assert not any(
        line.get("request_id") == "req-abc-1" and line.get("status") == 202 for line in lines
    )
