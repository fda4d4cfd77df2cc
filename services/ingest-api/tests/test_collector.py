"""The collector core on its own: plain requests in, plain responses out, a memory bus."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from prometheus_client import REGISTRY

from ingest_api.collector import Collector
from ingest_api.exchange import Disconnected, Request, Response, body_of

Factory = Callable[..., Any]


def post(path: str, body: bytes | AsyncIterator[bytes], **headers: str) -> Request:
    chunks = body_of(body) if isinstance(body, bytes) else body
    merged = {"authorization": "Bearer k-web"}
    merged.update((name.replace("_", "-"), value) for name, value in headers.items())
    return Request("POST", path, "", merged, "198.51.100.9", chunks, "rid")


def document(response: Response) -> Any:
    return orjson.loads(response.body)


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


EVENT = {"event_type": "click", "timestamp": "2026-11-27T11:59:00Z", "anonymous_id": "a"}


async def test_unknown_paths_and_methods_are_named(make_collector: Factory) -> None:
    collector, _ = make_collector()
    missing = await collector.handle(post("/v1/nowhere", b"{}"))
    assert (missing.status, document(missing)["code"]) == (404, "http_404")
    wrong = await collector.handle(Request("GET", "/v1/events", "", {}, None, body_of(b"")))
    assert (wrong.status, dict(wrong.headers)) == (405, {"allow": "POST"})


async def test_accepted_events_are_published_with_the_request_facts(
    make_collector: Factory,
) -> None:
    collector, bus = make_collector()
    response = await collector.handle(post("/v1/events", orjson.dumps({"events": [EVENT, 1]})))
    assert response.status == 202 and response.allowed_origins == ("*",)
    assert document(response)["accepted"] == 1
    ((key, event),) = bus.events
    assert key == b"a" and event["client_ip"] == "198.51.100.0"
    assert event["received_at"] == "2026-11-27T12:00:00Z" and event["source"] == "web"
    ((_, letter),) = bus.dead_letters
    assert letter["request_id"] == "rid" and letter["index"] == 1


async def test_a_retried_body_gets_the_same_ids_gzipped_or_not(make_collector: Factory) -> None:
    collector, bus = make_collector()
    body = orjson.dumps({"events": [EVENT, EVENT]})
    await collector.handle(post("/v1/events", body))
    await collector.handle(post("/v1/events", gzip.compress(body), content_encoding="gzip"))
    ids = [event["event_id"] for _, event in bus.events]
    assert ids[:2] == ids[2:] and ids[0] != ids[1]


async def test_a_failed_publish_is_503_and_counts_every_event(make_collector: Factory) -> None:
    collector, bus = make_collector()
    bus.failing = True
    before = counter("ingest_events_rejected_total", reason="kafka_unavailable")
    response = await collector.handle(post("/v1/events", orjson.dumps({"events": [EVENT] * 3})))
    assert response.status == 503 and dict(response.headers)["Retry-After"] == "2"
    assert "send the same body again" in document(response)["message"]
    assert counter("ingest_events_rejected_total", reason="kafka_unavailable") == before + 3


async def test_the_clock_policy_is_counted_per_bound(make_collector: Factory) -> None:
    collector, bus = make_collector(ingest_clock_max_ahead_seconds=30)
    before = counter("ingest_event_time_adjusted_total", bound="ahead")
    ahead = {**EVENT, "timestamp": "2026-11-27T12:01:00Z"}  # 60 s ahead, over 30
    await collector.handle(post("/v1/events", orjson.dumps({"events": [ahead, EVENT]})))
    assert counter("ingest_event_time_adjusted_total", bound="ahead") == before + 1
    assert [e.get("event_time_adjusted") for _, e in bus.events] == ["ahead", None]


async def test_a_slow_body_is_refused_after_the_body_timeout(make_collector: Factory) -> None:
    collector, _ = make_collector(ingest_body_timeout_seconds=0.05)

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"events": ['
        await asyncio.sleep(10)
        yield b"]}"

    response = await collector.handle(post("/v1/events", trickle()))
    assert (response.status, document(response)["code"]) == (408, "request_timeout")
    assert collector.buffered_bytes == 0


async def test_bodies_being_read_share_a_memory_budget(make_collector: Factory) -> None:
    collector, bus = make_collector(ingest_max_buffered_body_bytes=1024 * 1024)
    release = asyncio.Event()

    async def held_open() -> AsyncIterator[bytes]:
        yield b" " * 600_000
        await release.wait()
        yield orjson.dumps({"events": [EVENT]})

    slow = asyncio.create_task(collector.handle(post("/v1/events", held_open())))
    await asyncio.sleep(0.01)
    large = b" " * 500_000 + orjson.dumps({"events": [EVENT]})
    busy = await collector.handle(post("/v1/events", large))
    assert (busy.status, document(busy)["code"]) == (503, "server_busy")
    assert dict(busy.headers)["Retry-After"] == "2"
    release.set()
    assert (await slow).status == 202
    assert collector.buffered_bytes == 0
    assert (await collector.handle(post("/v1/events", large))).status == 202
    assert len(bus.events) == 2


async def test_a_client_gone_mid_body_is_named(make_collector: Factory) -> None:
    collector, _ = make_collector()

    async def gone() -> AsyncIterator[bytes]:
        yield b"{"
        raise Disconnected

    response = await collector.handle(post("/v1/events", gone()))
    assert (response.status, document(response)["code"]) == (400, "client_disconnected")


async def test_segment_keys_in_the_body_count_only_without_a_header_key(
    make_collector: Factory,
) -> None:
    collector: Collector = make_collector()[0]
    body = orjson.dumps({"writeKey": "k-web", "batch": [{"type": "page", "userId": "u"}]})
    request = Request("POST", "/v1/batch", "", {}, None, body_of(body))
    assert (await collector.handle(request)).status == 200
    wrong_header = Request("POST", "/v1/batch", "", {"x-write-key": "nope"}, None, body_of(body))
    assert (await collector.handle(wrong_header)).status == 401


async def test_a_path_may_have_a_handler_per_method(make_collector: Factory) -> None:
    from ingest_api.collector import Route
    from ingest_api.config import Settings
    from ingest_api.exchange import json_response

    async def answer(collector: Collector, request: Request) -> Response:
        return json_response(200, {"method": request.method})

    _, bus = make_collector()
    routes = [Route("/x", ("GET",), answer), Route("/x", ("POST",), answer)]
    collector = Collector(Settings(), bus, routes)
    for method in ("GET", "POST"):
        response = await collector.handle(Request(method, "/x", "", {}, None, body_of(b"")))
        assert document(response) == {"method": method}
    refused = await collector.handle(Request("PUT", "/x", "", {}, None, body_of(b"")))
    assert (refused.status, dict(refused.headers)) == (405, {"allow": "GET, POST"})


class HeldPublisher:
    """A bus whose publishes wait until released: requests pile up in flight."""

    def __init__(self, expected: int) -> None:
        self.ready = True
        self.expected = expected
        self.waiting = 0
        self.all_waiting = asyncio.Event()
        self.release = asyncio.Event()
        self.published = 0

    async def publish(self, events: list[Any], dead_letters: list[Any]) -> None:
        self.waiting += 1
        if self.waiting == self.expected:
            self.all_waiting.set()
        await self.release.wait()
        self.published += len(events)
        events.clear()
        dead_letters.clear()


async def test_requests_past_the_in_flight_bound_are_shed_at_once(
    make_collector: Factory,
) -> None:
    collector, _ = make_collector(ingest_max_inflight_requests=2)
    held = HeldPublisher(expected=2)
    collector.publisher = held
    body = orjson.dumps({"events": [EVENT]})
    waiting = [asyncio.create_task(collector.handle(post("/v1/events", body))) for _ in "ab"]
    await asyncio.wait_for(held.all_waiting.wait(), 10)
    read: list[bytes] = []

    async def watched() -> AsyncIterator[bytes]:
        read.append(body)
        yield body

    # Answered while the two wait (a missing bound would hang here until the deadline),
    # without reading the body.
    shed = await asyncio.wait_for(collector.handle(post("/v1/events", watched())), 10)
    assert read == []
    assert (shed.status, document(shed)["code"]) == (503, "overloaded")
    assert "send the same body again" in document(shed)["message"]
    assert dict(shed.headers)["Retry-After"] == "1"
    held.release.set()
    assert [r.status for r in await asyncio.gather(*waiting)] == [202, 202]
    assert held.published == 2 and collector.inflight == 0
    again = await collector.handle(post("/v1/events", body))  # the bound frees again
    assert again.status == 202
