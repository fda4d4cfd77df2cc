"""The two ways into the core answer the same: below FastAPI's router (DispatchMiddleware)
and through it (the FastAPI routes), for the same requests, with the same effects."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from ingest_api.asgi import request_body, request_from_scope
from ingest_api.exchange import Disconnected

AppFactory = Callable[..., Any]


def event(who: str, n: int, **fields: Any) -> dict[str, Any]:
    """A valid page view; fields given as None are left out."""
    values: dict[str, Any] = {
        "event_id": f"{who}-{n}",
        "event_type": "page_view",
        "timestamp": "2026-11-27T11:59:00Z",
        "anonymous_id": who,
        **fields,
    }
    return {k: v for k, v in values.items() if v is not None}


BASIC_WEB = "Basic " + base64.b64encode(b"k-web:").decode()

# (method, path, headers, body or query parameters)
REQUESTS: list[tuple[str, str, dict[str, str], Any]] = [
    ("POST", "/v1/events", {"authorization": "Bearer k-web"}, {"events": [event("a", 0)]}),
    (
        "POST",
        "/v1/events",
        {"x-write-key": "k-web", "x-forwarded-for": "198.51.100.7"},
        {"sent_at": "2026-11-27T11:50:00Z", "events": [event("a", 1), {"event_type": "X"}, 5]},
    ),
    ("POST", "/v1/events", {"authorization": "Bearer k-web"}, {"events": [{"nope": 1}]}),
    ("POST", "/v1/events", {"authorization": "Bearer k-web"}, event("b", 2, event_id=None)),
    ("POST", "/v1/events", {"authorization": "Bearer k-web"}, b"{not json"),
    ("POST", "/v1/events", {"authorization": "Bearer k-web", "content-type": "text/xml"}, b"<e/>"),
    ("POST", "/v1/events", {"authorization": "Bearer k-web", "content-encoding": "br"}, b"{}"),
    ("POST", "/v1/events", {"authorization": "Bearer k-web"}, b" " * 1_048_577),
    ("POST", "/v1/events", {"authorization": "Bearer k-web"}, {"events": []}),
    ("POST", "/v1/events", {}, {"events": [event("c", 3)]}),
    ("POST", "/v1/events", {"authorization": "Bearer wrong"}, {"events": [event("c", 4)]}),
    (
        "POST",
        "/v1/events",
        {"authorization": "Bearer k-shop", "origin": "https://evil.example"},
        {"events": [event("c", 5)]},
    ),
    (
        "POST",
        "/v1/events",
        {"authorization": "Bearer k-shop", "origin": "https://shop.example"},
        {"events": [event("c", 6)]},
    ),
    ("POST", "/v1/events?write_key=k-web", {"content-type": "text/plain"}, event("d", 7)),
    (
        "POST",
        "/v1/events",
        {"authorization": "Bearer k-web", "content-encoding": "gzip"},
        gzip.compress(orjson.dumps({"events": [event("e", 8)]})),
    ),
    ("POST", "/v1/events", {"authorization": "Bearer k-slow"}, {"events": [event("f", 9)] * 3}),
    ("POST", "/v1/events", {"authorization": "Bearer k-slow"}, {"events": [event("f", 10)]}),
    (
        "POST",
        "/v1/batch",
        {"authorization": BASIC_WEB},
        {
            "sentAt": "2026-11-27T11:59:00Z",
            "batch": [
                {"type": "track", "event": "Order Completed", "userId": "u", "messageId": "m1"},
                {"type": "teleport", "userId": "u"},
            ],
        },
    ),
    ("POST", "/v1/batch", {}, {"writeKey": "k-web", "batch": [{"type": "page", "userId": "u"}]}),
    ("POST", "/v1/batch", {}, {"writeKey": "nope", "batch": []}),
    ("POST", "/v1/batch", {"authorization": BASIC_WEB}, {"batch": "x"}),
    ("POST", "/v1/track", {"authorization": BASIC_WEB}, {"event": "Signed Up", "userId": "u"}),
    ("POST", "/v1/identify", {"authorization": BASIC_WEB}, [1, 2]),
    ("GET", "/v1/pixel.gif", {}, {"write_key": "k-web", "anonymous_id": "p", "p.x": "1"}),
    ("GET", "/v1/pixel.gif", {}, {"write_key": "k-web"}),
    ("GET", "/v1/pixel.gif", {}, {"write_key": "nope", "anonymous_id": "p"}),
    ("HEAD", "/v1/pixel.gif", {}, {"write_key": "k-web", "anonymous_id": "p"}),
    ("GET", "/v1/events", {}, None),
    ("POST", "/v1/nowhere", {}, b"{}"),
    (
        "OPTIONS",
        "/v1/events?write_key=k-shop",
        {"origin": "https://shop.example", "access-control-request-method": "POST"},
        None,
    ),
]


def send(client: Any, method: str, path: str, headers: dict[str, str], body: Any) -> Any:
    headers = {"x-request-id": "same-id", **headers}
    if method in ("GET", "HEAD"):
        return client.request(method, path, params=body, headers=headers)
    content = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
    return client.request(method, path, content=content, headers=headers)


def test_both_adapters_answer_the_same_with_the_same_effects(app_client: AppFactory) -> None:
    fast, fast_bus = app_client(fast_path=True)
    routed, routed_bus = app_client(fast_path=False)
    statuses = set()
    for method, path, headers, body in REQUESTS:
        one = send(fast, method, path, headers, body)
        other = send(routed, method, path, headers, body)
        what = f"{method} {path} {headers}"
        assert one.status_code == other.status_code, what
        assert one.content == other.content, what
        assert sorted(one.headers.multi_items()) == sorted(other.headers.multi_items()), what
        statuses.add(one.status_code)
    # Every kind of answer was compared, not only successes.
    assert {200, 202, 204, 400, 401, 403, 404, 405, 413, 415, 429} <= statuses

    assert fast_bus.events == routed_bus.events
    assert fast_bus.dead_letters == routed_bus.dead_letters
    assert len(fast_bus.events) >= 8 and len(fast_bus.dead_letters) >= 4


def test_a_publish_failure_is_the_same_503_both_ways(app_client: AppFactory) -> None:
    answers = []
    for fast_path in (True, False):
        client, bus = app_client(fast_path=fast_path)
        bus.failing = True
        answers.append(
            send(
                client, "POST", "/v1/events", {"x-write-key": "k-web"}, {"events": [event("g", 1)]}
            )
        )
    assert answers[0].status_code == answers[1].status_code == 503
    assert answers[0].content == answers[1].content
    assert answers[0].headers["retry-after"] == answers[1].headers["retry-after"] == "2"


def scope(**overrides: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/events",
        "query_string": b"write_key=a%20b&x=1",
        "headers": [(b"x-forwarded-for", b"10.0.0.1"), (b"x-forwarded-for", b"10.0.0.2")],
        "client": ("192.0.2.1", 5000),
        "clickstream.request_id": "rid-1",
        **overrides,
    }


async def test_request_from_scope_reads_plain_values() -> None:
    messages = iter(
        [
            {"type": "http.request", "body": b"ab", "more_body": True},
            {"type": "http.request", "body": b"", "more_body": True},
            {"type": "http.request", "body": b"c", "more_body": False},
        ]
    )

    async def receive() -> dict[str, Any]:
        return next(messages)

    request = request_from_scope(scope(), receive)
    assert (request.method, request.path, request.peer, request.request_id) == (
        "POST",
        "/v1/events",
        "192.0.2.1",
        "rid-1",
    )
    assert request.headers == {"x-forwarded-for": "10.0.0.1"}  # the first value, as Headers
    assert request.query_value("write_key") == "a b" and request.query_value("y") is None
    assert b"".join([chunk async for chunk in request.body]) == b"abc"
    assert request_from_scope(scope(client=None), receive).peer is None


async def test_a_disconnect_mid_body_is_named() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    with pytest.raises(Disconnected):
        async for _ in request_body(receive):
            pass
