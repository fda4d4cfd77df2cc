"""The server's limits on a real uvicorn (httptools) server, over real sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import uvicorn

from clickstream_local.config import free_ports
from ingest_api.config import Settings
from ingest_api.main import create_app
from ingest_api.server import guarded_protocol

LIMITS = {
    "ingest_max_header_bytes": 4096,
    "ingest_header_timeout_seconds": 0.5,
    "ingest_max_connections": 3,
    "ingest_write_keys": {"k": "web"},
}
EVENT = orjson.dumps({"event_type": "click", "timestamp": "2026-11-27T11:59:00Z", "user_id": "u"})


class Bus:
    ready = True

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def check(self) -> bool:
        return True

    async def publish(self, events: Any, dead_letters: Any) -> None:
        events.clear()
        dead_letters.clear()


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, int]]:
    settings = Settings(**LIMITS)
    (port,) = free_ports(1)
    config = uvicorn.Config(
        create_app(settings, Bus()),
        host="127.0.0.1",
        port=port,
        http=guarded_protocol(settings),
        loop="asyncio",
        log_config=None,
        access_log=False,
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield "127.0.0.1", port
    finally:
        running.should_exit = True
        thread.join(timeout=30)


def connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=10)


def one_answer(sock: socket.socket) -> bytes:
    """One whole answer on a kept-alive connection (its headers, then content-length bytes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or 10 s pass)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def request(body: bytes = EVENT, extra: bytes = b"", close: bool = True) -> bytes:
    return (
        b"POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer k\r\n"
        + extra
        + b"content-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + (b"\r\nconnection: close" if close else b"")
        + b"\r\n\r\n"
        + body
    )


def test_a_normal_request_passes(server: tuple[str, int]) -> None:
    with connect(server) as sock:
        sock.sendall(request())
        assert answer(sock).startswith(b"HTTP/1.1 202 ")


def test_headers_over_the_limit_get_431_before_the_app(server: tuple[str, int]) -> None:
    with connect(server) as sock:
        sock.sendall(request(extra=b"x-padding: " + b"a" * 5000 + b"\r\n"))
        reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert b'"code":"header_too_large"' in reply and b"INGEST_MAX_HEADER_BYTES" in reply


def test_a_header_trickled_in_pieces_is_counted_whole(server: tuple[str, int]) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nx-long: ")
        for _ in range(10):
            try:
                sock.sendall(b"b" * 500)
            except OSError:
                break
        reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 431 ")


def test_a_large_body_is_not_mistaken_for_headers(server: tuple[str, int]) -> None:
    body = b'{"events": [' + b",".join([EVENT] * 300) + b"]}"
    assert len(body) > 4 * 4096
    with connect(server) as sock:
        sock.sendall(request(body))
        assert answer(sock).startswith(b"HTTP/1.1 202 ")


def test_each_request_on_a_connection_has_its_own_allowance(server: tuple[str, int]) -> None:
    padding = b"x-padding: " + b"a" * 3000 + b"\r\n"  # under the limit, twice over it
    with connect(server) as sock:
        sock.sendall(request(extra=padding, close=False))
        first = one_answer(sock)
        sock.sendall(request(extra=padding))
        second = answer(sock)
    assert first.startswith(b"HTTP/1.1 202 ") and second.startswith(b"HTTP/1.1 202 ")


def test_slow_headers_get_408(server: tuple[str, int]) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /v1/events HTTP/1.1\r\nhost: x\r\n")  # and nothing more
        began = time.monotonic()
        reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 408 ") and b"header_timeout" in reply
    assert time.monotonic() - began < 9  # closed by the limit, not by the client's timeout


def test_a_silent_connection_is_closed(server: tuple[str, int]) -> None:
    with connect(server) as sock:
        assert answer(sock).startswith(b"HTTP/1.1 408 ")


def test_connections_over_the_limit_are_refused(server: tuple[str, int]) -> None:
    held = [connect(server) for _ in range(3)]
    try:
        with connect(server) as extra:
            reply = answer(extra)
        assert reply.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in reply
        assert b"too_many_connections" in reply
    finally:
        for sock in held:
            sock.close()
