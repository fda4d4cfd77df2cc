"""The trackers' paths in process, on both ways in (fast path and FastAPI), on a memory bus.

The real SDKs run against a real collector in tests/trackers; these pin the answers' details.
"""

from __future__ import annotations

import base64
import gzip
from typing import Any

import orjson
import pytest

from ingest_api.collector import path_pattern

Factory = Any
KEYS: dict[str, Any] = {
    "k-web": "web",
    "k-shop": {"source": "shop", "allowed_origins": ["https://shop.example"]},
    "k-server": {"source": "server", "use_context_ip": True},
}
TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def sp_event(**fields: str) -> dict[str, str]:
    return {"e": "pv", "eid": "e-1", "duid": "d-1", "dtm": "1795867200000", **fields}


@pytest.fixture(params=[True, False], ids=["fast", "fastapi"])
def client(request: pytest.FixtureRequest, app_client: Factory) -> Any:
    test_client, bus = app_client(fast_path=request.param, ingest_write_keys=KEYS)
    test_client.bus = bus
    return test_client


def test_short_paths_are_the_calls_they_abbreviate(client: Any) -> None:
    message = {"userId": "u", "event": "Product Viewed", "writeKey": "k-web"}
    answer = client.post(
        "/v1/t", content=orjson.dumps(message), headers={"Content-Type": "text/plain"}
    )
    assert answer.status_code == 200 and answer.json()["accepted"] == 1
    page = client.post("/v1/p", json={"anonymousId": "a", "name": "Home"}, headers=basic("k-web"))
    assert page.json()["accepted"] == 1
    identify = client.post(
        "/v1/i", json={"userId": "u", "traits": {"a": 1}}, headers=basic("k-web")
    )
    assert identify.json()["accepted"] == 1
    types = [event["event_type"] for _, event in client.bus.events]
    assert types == ["product_view", "page_view", "identify"]


def test_v1_b_takes_the_key_from_the_body_gzip_and_text_plain(client: Any) -> None:
    body = {"batch": [{"type": "screen", "anonymousId": "a", "name": "Cart"}], "writeKey": "k-web"}
    answer = client.post(
        "/v1/b",
        content=gzip.compress(orjson.dumps(body)),
        headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"},
    )
    assert answer.json() == {"success": True, "accepted": 1, "rejected": []}
    assert client.bus.events[0][1]["event_type"] == "screen_view"
    unknown = client.post("/v1/b", json={**body, "writeKey": "nope"})
    assert (unknown.status_code, unknown.json()["code"]) == (401, "unknown_write_key")


def test_context_ip_only_from_a_trusted_server_source(client: Any) -> None:
    message = {
        "type": "track",
        "userId": "u",
        "event": "X",
        "context": {"ip": "203.0.113.77", "app": {"name": "a"}},
    }
    for key in ("k-server", "k-web"):
        client.post("/v1/batch", json={"batch": [message]}, headers=basic(key))
    trusted, other = (event for _, event in client.bus.events)
    assert trusted["client_ip"] == "203.0.113.0" and trusted["source"] == "server"
    assert other.get("client_ip") != "203.0.113.0"
    assert trusted["raw_context"] == other["raw_context"] == {"app": {"name": "a"}}


def test_segment_settings_point_back_at_the_collector(client: Any) -> None:
    answer = client.get("/v1/projects/k-web/settings", headers={"Host": "collect.test:8080"})
    assert answer.status_code == 200
    destination = answer.json()["integrations"]["Segment.io"]
    assert (destination["protocol"], destination["apiHost"]) == ("http", "collect.test:8080/v1")
    assert answer.headers["cache-control"] == "public, max-age=300"
    missing = client.get("/v1/projects/nope/settings")
    assert (missing.status_code, missing.json()["code"]) == (404, "unknown_write_key")
    foreign = client.get("/v1/projects/k-shop/settings", headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403


def test_public_url_and_forwarded_headers(app_client: Factory) -> None:
    configured, _ = app_client(ingest_write_keys=KEYS, ingest_public_url="https://edge.example/c/")
    doc = configured.get("/v1/projects/k-web/settings").json()["integrations"]["Segment.io"]
    assert (doc["protocol"], doc["apiHost"]) == ("https", "edge.example/c/v1")
    # Starlette's test client connects as "testclient"; no proxy is trusted by default.
    proxied, _ = app_client(ingest_write_keys=KEYS)
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
    doc = proxied.get("/v1/projects/k-web/settings", headers=forwarded).json()
    assert doc["integrations"]["Segment.io"]["apiHost"] == "testserver/v1"


def test_rudderstack_source_config_and_beacon(client: Any) -> None:
    for path in ("/sourceConfig/?p=npm&v=3.34.1&writeKey=k-web", "/sourceConfig?writeKey=k-web"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert answer.json()["source"]["id"] == "web" and answer.json()["source"]["enabled"]
    assert client.get("/sourceConfig/", headers=basic("k-web")).status_code == 200
    assert client.get("/sourceConfig/").status_code == 404
    batch = {"batch": [{"type": "track", "event": "Order Completed", "anonymousId": "a"}]}
    beacon = client.post(
        "/beacon/v1/batch?writeKey=k-web",
        content=orjson.dumps(batch),
        headers={"Content-Type": "text/plain"},
    )
    assert beacon.json()["accepted"] == 1
    assert client.bus.events[-1][1]["event_type"] == "purchase"


def test_snowplow_post_with_the_key_in_the_path(client: Any) -> None:
    body = {"schema": PAYLOAD_DATA, "data": [sp_event(), sp_event(eid="e-2", e="nope")]}
    answer = client.post(f"/snowplow/k-web{TP2}", json=body)
    assert answer.status_code == 200
    result = answer.json()
    assert (result["success"], result["accepted"]) == (False, 1)
    assert "unsupported event kind" in result["rejected"][0]["reason"]
    ((_, event),) = client.bus.events
    assert (event["event_type"], event["source"], event["event_id"]) == ("page_view", "web", "e-1")
    assert client.bus.dead_letters[0][1]["code"] == "invalid"


def test_snowplow_root_paths_take_the_app_id_as_the_key(client: Any) -> None:
    body = {
        "schema": PAYLOAD_DATA,
        "data": [sp_event(aid="k-web"), sp_event(eid="e-2", aid="other")],
    }
    result = client.post(TP2, json=body).json()
    assert result["accepted"] == 1
    assert "aid differs" in result["rejected"][0]["reason"]
    event = client.bus.events[0][1]
    assert "app_name" not in event.get("context", {})  # the key is not recorded
    unknown = client.post(TP2, json={"schema": PAYLOAD_DATA, "data": [sp_event(aid="nope")]})
    assert unknown.status_code == 401
    with_header = client.post(TP2, json={"schema": PAYLOAD_DATA, "data": [sp_event(aid="shop")]},
                              headers=basic("k-web"))  # fmt: skip
    assert with_header.json()["accepted"] == 1
    assert client.bus.events[-1][1]["context"]["app_name"] == "shop"


def test_snowplow_refuses_what_is_not_payload_data(client: Any) -> None:
    for body in ({"data": []}, {"schema": PAYLOAD_DATA, "data": {}}, [1]):
        answer = client.post(f"/snowplow/k-web{TP2}", json=body)
        assert (answer.status_code, answer.json()["code"]) == (400, "invalid_body"), body
    empty = client.post(f"/snowplow/k-web{TP2}", json={"schema": PAYLOAD_DATA, "data": []})
    assert (empty.status_code, empty.json()["code"]) == (400, "no_events")


def test_snowplow_get_answers_the_pixel_whatever_the_event(client: Any) -> None:
    good = client.get("/snowplow/k-web/i", params=sp_event())
    bad = client.get("/i", params={"e": "xx", "aid": "k-web"})
    for answer in (good, bad):
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
        assert "no-store" in answer.headers["cache-control"]
    assert [e["event_type"] for _, e in client.bus.events] == ["page_view"]
    assert len(client.bus.dead_letters) == 1
    refused = client.get("/snowplow/nope/i", params=sp_event())
    assert refused.status_code == 401 and "no-store" in refused.headers["cache-control"]


def test_snowplow_anonymous_requests_record_no_address(client: Any) -> None:
    body = {"schema": PAYLOAD_DATA, "data": [sp_event()]}
    client.post(f"/snowplow/k-web{TP2}", json=body, headers={"X-Forwarded-For": "1.2.3.4"})
    client.post(f"/snowplow/k-web{TP2}", json=body, headers={"SP-Anonymous": "*"})
    named, anonymous = (event for _, event in client.bus.events)
    assert "client_ip" not in anonymous
    assert named.keys() - anonymous.keys() <= {"client_ip"}


def test_preflights_allow_what_the_sdks_ask_for(client: Any) -> None:
    asked = {
        "Origin": "https://shop.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,anonymousid,content-type",
    }
    answer = client.options("/v1/track", headers=asked)
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-headers"].endswith(
        ", authorization,anonymousid,content-type"
    )
    assert answer.headers["access-control-allow-credentials"] == "true"
    # A key named by the path decides the origins of its preflight.
    assert client.options(f"/snowplow/k-shop{TP2}", headers=asked).status_code == 204
    foreign = {**asked, "Origin": "https://evil.example"}
    assert client.options(f"/snowplow/k-shop{TP2}", headers=foreign).status_code == 403
    odd = {**asked, "Access-Control-Request-Headers": "x\r\ny"}
    answer = client.options("/v1/track", headers=odd)
    assert answer.headers["access-control-allow-headers"].endswith("X-Request-ID")
    sent = client.post("/v1/t", json={"userId": "u", "event": "X"},
                       headers={**basic("k-shop"), "Origin": "https://shop.example"})  # fmt: skip
    assert sent.headers["access-control-allow-credentials"] == "true"
    assert sent.headers["access-control-allow-origin"] == "https://shop.example"


def test_path_templates() -> None:
    pattern = path_pattern("/snowplow/{write_key}/i")
    assert pattern.match("/snowplow/k-1/i")
    assert not pattern.match("/snowplow//i") and not pattern.match("/snowplow/a/b/i")
