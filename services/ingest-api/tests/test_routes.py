"""The routes through TestClient, on a memory bus: operations, the tracker script, the
document, FastAPI's own refusals, and each collecting route by the FastAPI adapter."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson

AppFactory = Callable[..., Any]
EVENT = {"event_type": "click", "timestamp": "2026-11-27T11:59:00Z", "anonymous_id": "a"}


def test_health_readiness_and_metrics(app_client: AppFactory) -> None:
    client, bus = app_client()
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    bus.ready = False
    not_ready = client.get("/readyz")
    assert (not_ready.status_code, not_ready.json()) == (503, {"status": "kafka unreachable"})
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "ingest_http_requests_total" in metrics.text


def test_the_tracker_script_is_cached_by_etag(app_client: AppFactory) -> None:
    client, _ = app_client()
    script = client.get("/v1/tracker.js")
    assert script.status_code == 200 and "sendBeacon" in script.text
    assert script.headers["content-type"] == "application/javascript; charset=utf-8"
    again = client.get("/v1/tracker.js", headers={"If-None-Match": script.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_fastapis_own_refusals_have_the_error_shape(app_client: AppFactory) -> None:
    client, _ = app_client()
    missing = client.get("/v1/nowhere")
    assert (missing.status_code, missing.json()["code"]) == (404, "http_404")
    wrong = client.put("/healthz")
    assert (wrong.status_code, wrong.json()["code"]) == (405, "http_405")
    assert "x-request-id" in missing.headers
    assert client.get("/openapi.json").json()["info"]["title"] == "clickstream ingest API"


def test_each_collecting_route_through_fastapi(app_client: AppFactory) -> None:
    client, bus = app_client(fast_path=False)
    native = client.post(
        "/v1/events", content=orjson.dumps(EVENT), headers={"x-write-key": "k-web"}
    )
    assert (native.status_code, native.json()) == (202, {"accepted": 1, "rejected": []})
    basic = "Basic " + base64.b64encode(b"k-web:").decode()
    for call in ("track", "page", "screen", "identify", "group", "alias"):
        message = {"userId": "u", "event": "Signed Up", "messageId": f"m-{call}"}
        answer = client.post(
            f"/v1/{call}", content=orjson.dumps(message), headers={"authorization": basic}
        )
        assert answer.json() == {"success": True, "accepted": 1, "rejected": []}, call
    batch = client.post(
        "/v1/batch",
        content=orjson.dumps({"writeKey": "k-web", "batch": [{"type": "page", "userId": "u"}]}),
    )
    assert batch.json()["accepted"] == 1
    pixel = client.get("/v1/pixel.gif", params={"write_key": "k-web", "anonymous_id": "p"})
    assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"
    assert pixel.headers["cache-control"] == "no-cache, no-store, must-revalidate"
    refused = client.get("/v1/pixel.gif", params={"write_key": "nope", "anonymous_id": "p"})
    assert refused.status_code == 401 and "no-store" in refused.headers["cache-control"]
    assert [event["source"] for _, event in bus.events] == ["web"] * 9
    # Through FastAPI the telemetry names the route by its template, as on the fast path.
    metrics = client.get("/metrics").text
    assert 'ingest_http_requests_total{method="GET",route="/v1/pixel.gif",status="401"}' in metrics
