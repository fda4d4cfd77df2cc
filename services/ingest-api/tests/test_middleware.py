"""Each middleware on its own, around a stub ASGI app."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import REGISTRY

from ingest_api.asgi import REQUEST_ID_KEY, ROUTE_KEY
from ingest_api.config import Settings
from ingest_api.middleware import (
    REQUEST_ID,
    CorsMiddleware,
    DispatchMiddleware,
    RepeatFilter,
    RequestIdMiddleware,
    TelemetryMiddleware,
    route_label,
)

Message = dict[str, Any]


def http_scope(method: str = "POST", path: str = "/x", **headers: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
        "state": {},
    }


async def run(app: Any, scope: dict[str, Any]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def answering(status: int, seen: list[Any] | None = None, allowed: Any = None) -> Any:
    """A stub app: notes the request id it ran under, leaves `allowed` origins, answers."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if seen is not None:
            seen.append((REQUEST_ID.get(), scope.get(REQUEST_ID_KEY)))
        if allowed is not None:
            scope["state"]["allowed_origins"] = allowed
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def headers_of(messages: list[Message]) -> dict[bytes, bytes]:
    return dict(messages[0]["headers"])


async def test_request_id_is_the_clients_when_sane_else_generated() -> None:
    seen: list[Any] = []
    app = RequestIdMiddleware(answering(200, seen))
    sent = await run(app, http_scope(x_request_id="abc-1"))
    assert headers_of(sent)[b"x-request-id"] == b"abc-1"
    sent = await run(app, http_scope(x_request_id="bad id with spaces"))
    generated = headers_of(sent)[b"x-request-id"].decode()
    assert len(generated) == 32 and int(generated, 16) >= 0
    # The app ran under the id (logs name it), and found it in the scope.
    assert seen == [("abc-1", "abc-1"), (generated, generated)]
    assert REQUEST_ID.get() == ""  # reset once the request is done


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_telemetry_counts_by_route_and_logs_refusals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    labels = {"route": "/probe", "method": "POST", "status": "401"}
    before = sample("ingest_http_requests_total", labels)

    async def refuse(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope[ROUTE_KEY] = "/probe"
        await answering(401)(scope, receive, send)

    app = TelemetryMiddleware(refuse, Settings())
    with caplog.at_level(logging.INFO, "ingest_api.access"):
        await run(app, http_scope())
    assert sample("ingest_http_requests_total", labels) == before + 1
    (record,) = [r for r in caplog.records if r.name == "ingest_api.access"]
    assert record.status == 401 and record.route == "/probe"  # type: ignore[attr-defined]

    caplog.clear()
    with caplog.at_level(logging.INFO, "ingest_api.access"):
        await run(TelemetryMiddleware(answering(202), Settings()), http_scope())
    assert not caplog.records  # successes are not logged without INGEST_ACCESS_LOG


async def test_telemetry_counts_a_crash_as_500() -> None:
    labels = {"route": "unmatched", "method": "GET", "status": "500"}
    before = sample("ingest_http_requests_total", labels)

    async def crash(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await run(TelemetryMiddleware(crash, Settings()), http_scope("GET"))
    assert sample("ingest_http_requests_total", labels) == before + 1


def test_route_labels_are_bounded() -> None:
    class Matched:
        path = "/v1/track"

    assert route_label({ROUTE_KEY: "/v1/events"}) == "/v1/events"
    assert route_label({"route": Matched()}) == "/v1/track"
    assert route_label({"path": "/random/123"}) == "unmatched"


CORS_SETTINGS = Settings(
    ingest_write_keys={
        "k-shop": {"source": "shop", "allowed_origins": ["https://shop.example"]},
        "k-blog": {"source": "blog", "allowed_origins": ["https://blog.example"]},
    }
)


async def test_preflights_are_answered_for_the_keys_origins() -> None:
    app = CorsMiddleware(answering(500), CORS_SETTINGS)
    scope = http_scope(
        "OPTIONS", origin="https://shop.example", access_control_request_method="POST"
    )
    sent = await run(app, {**scope, "query_string": b"write_key=k-shop"})
    assert sent[0]["status"] == 204
    assert headers_of(sent)[b"access-control-allow-origin"] == b"https://shop.example"
    assert headers_of(sent)[b"access-control-max-age"] == b"86400"
    # Another key's origin: refused for this key, allowed when no key is named.
    blog = http_scope(
        "OPTIONS", origin="https://blog.example", access_control_request_method="POST"
    )
    assert (await run(app, {**blog, "query_string": b"write_key=k-shop"}))[0]["status"] == 403
    assert (await run(app, blog))[0]["status"] == 204
    evil = http_scope(
        "OPTIONS", origin="https://evil.example", access_control_request_method="POST"
    )
    refused = await run(app, evil)
    assert refused[0]["status"] == 403
    assert b"access-control-allow-origin" not in headers_of(refused)


async def test_answers_carry_cors_headers_of_the_resolved_key() -> None:
    blog_only = ("https://blog.example",)
    sent = await run(
        CorsMiddleware(answering(202, allowed=blog_only), CORS_SETTINGS),
        http_scope(origin="https://shop.example"),
    )
    assert b"access-control-allow-origin" not in headers_of(sent)
    sent = await run(
        CorsMiddleware(answering(401), CORS_SETTINGS), http_scope(origin="https://shop.example")
    )
    assert headers_of(sent)[b"access-control-allow-origin"] == b"https://shop.example"
    assert headers_of(sent)[b"access-control-expose-headers"] == b"Retry-After, X-Request-ID"
    sent = await run(CorsMiddleware(answering(202), CORS_SETTINGS), http_scope())
    assert headers_of(sent) == {}  # no Origin, no CORS headers


async def test_dispatch_serves_only_the_core_routes() -> None:
    served: list[str] = []

    class Core:
        async def handle(self, request: Any) -> Any:
            from ingest_api.exchange import json_response

            served.append(f"{request.method} {request.path}")
            return json_response(202, {"ok": True})

    class State:
        collector = Core()

    class App:
        state = State()

    app = DispatchMiddleware(answering(404), [("POST", "/v1/events")])
    sent = await run(app, {**http_scope(path="/v1/events"), "app": App()})
    assert sent[0]["status"] == 202 and served == ["POST /v1/events"]
    scope = {**http_scope("GET", "/v1/events"), "app": App()}
    assert (await run(app, scope))[0]["status"] == 404  # left to FastAPI
    assert scope.get(ROUTE_KEY) is None


def test_repeated_kafka_client_messages_are_let_through_once_per_interval() -> None:
    repeat = RepeatFilter(interval_seconds=60)

    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)

    assert repeat.filter(record("aiokafka.conn", "connect failed"))
    assert not repeat.filter(record("aiokafka.conn", "connect failed"))
    assert repeat.filter(record("aiokafka.conn", "another"))
    assert repeat.filter(record("ingest_api", "connect failed"))
    assert repeat.filter(record("ingest_api", "connect failed"))
