"""The HTTP server: uvicorn with httptools, and the limits it lacks.

What uvicorn 0.54 offers and what is used (checked in its source, `uvicorn/config.py` and
`protocols/http/httptools_impl.py`):

- `timeout_keep_alive` closes a connection idle *between* requests: used
  (INGEST_KEEP_ALIVE_SECONDS). It is not armed before a connection's first request.
- `h11_max_incomplete_event_size` bounds the request line and headers, for the h11 parser
  only; the httptools parser (llhttp, several times faster) buffers the URL and the headers
  without a limit, before the app (and authentication) ever runs.
- `limit_concurrency` answers 503 once that many connections *or* tasks exist, but still
  accepts each connection and reads its headers first: it bounds neither memory nor time.
- Nothing bounds the time a client may take to send its headers (slowloris).

So `GuardedHttpToolsProtocol` adds, per connection: at most INGEST_MAX_HEADER_BYTES of
request line and headers (431 beyond), at most INGEST_HEADER_TIMEOUT_SECONDS from a
connection's start, or from a request's first byte, to the end of its headers (408), and at
most INGEST_MAX_CONNECTIONS open connections (503 and close beyond). The body's time and the
memory every body being read may hold are bounded by the collector core (`read_body`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ingest_api import metrics
from ingest_api.config import Settings
from ingest_api.errors import error_body


def refusal(status: int, code: str, message: str, extra: bytes = b"") -> bytes:
    """A complete HTTP/1.1 answer that closes the connection, in the API's error shape."""
    body = orjson.dumps(error_body(code, message))
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: ",
            str(len(body)).encode(),
            b"\r\n",
            extra,
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class HeadTooLarge(Exception):
    """The request line and headers were over the limit (raised inside the parser)."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on what a connection can hold before the app
    runs. Configured by `guarded_protocol`."""

    max_head_bytes = 32 * 1024
    head_timeout_seconds = 10.0
    max_connections = 2048
    # After a refusal, how long the rest of what the client is still sending is read and
    # dropped before the socket closes (a "lingering close", as nginx and Apache do).
    linger_seconds = 2.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # True from a connection's start, or a request's end, until the end of the next
        # request's headers: bytes received meanwhile are request line and headers. They
        # are counted twice: as they arrive (what the parser may be holding) and, exactly,
        # as the parser hands them over (the request line and headers it read).
        self.in_head = True
        self.head_bytes = 0
        self.head_parsed = 0
        self.head_timer: asyncio.TimerHandle | None = None
        self.linger_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.refuse(
                "too_many_connections",
                refusal(
                    503,
                    "too_many_connections",
                    "the collector holds as many connections as it may "
                    "(INGEST_MAX_CONNECTIONS); retry",
                    b"retry-after: 1\r\n",
                ),
            )
            return
        # The keep-alive timer only runs between requests: the first one has this.
        self.arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm_head_timer()
        if self.linger_timer is not None:
            self.linger_timer.cancel()
            self.linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.linger_timer is not None:
            return  # refused: what the client still sends is dropped
        # uvicorn's own, but for requests refused at the end of their headers.
        self._unset_keepalive_if_required()
        if self.in_head:
            # If the head ends within this chunk, parsing resets the count.
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.head_parsed > self.max_head_bytes:
                self.refuse_head()
                return
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self.in_head and self.head_bytes > self.max_head_bytes:
            self.refuse_head()

    def refuse_head(self) -> None:
        self.refuse(
            "header_too_large",
            refusal(
                431,
                "header_too_large",
                f"request line and headers over {self.max_head_bytes} bytes "
                "(INGEST_MAX_HEADER_BYTES)",
            ),
        )

    def on_url(self, url: bytes) -> None:
        self.head_parsed += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_parsed += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_parsed = 0
        if self.head_timer is None:
            self.arm_head_timer()

    def on_headers_complete(self) -> None:
        if self.head_parsed > self.max_head_bytes:
            # Raised through the parser: the app never runs, the rest of the data is not
            # parsed, and `data_received` answers 431.
            raise HeadTooLarge
        self.in_head = False
        self.head_bytes = 0
        self.disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head = True
        self.head_bytes = 0

    def arm_head_timer(self) -> None:
        self.disarm_head_timer()
        self.head_timer = self.loop.call_later(self.head_timeout_seconds, self.head_timed_out)

    def disarm_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def head_timed_out(self) -> None:
        self.head_timer = None
        if not self.in_head or self.transport.is_closing():
            return
        answering = self.cycle is not None and not self.cycle.response_complete
        # While an earlier (pipelined) request is being answered, close without a word.
        answer = (
            b""
            if answering
            else refusal(
                408,
                "header_timeout",
                f"request line and headers not received within {self.head_timeout_seconds:g} s "
                "(INGEST_HEADER_TIMEOUT_SECONDS)",
            )
        )
        self.refuse("header_timeout", answer)

    def refuse(self, reason: str, answer: bytes) -> None:
        self.disarm_head_timer()
        if self.transport.is_closing():
            return
        metrics.CONNECTIONS_REFUSED.labels(reason).inc()
        if not answer or not self.transport.can_write_eof():
            self.transport.close()
            return
        # Closing at once while the client is still sending makes the kernel answer its next
        # bytes with a reset, which can destroy the refusal before the client reads it. So:
        # send the answer and our FIN, read and drop what still comes, close after a bound.
        self.transport.write(answer)
        self.transport.write_eof()
        self.linger_timer = self.loop.call_later(self.linger_seconds, self.transport.close)


def guarded_protocol(settings: Settings) -> type[GuardedHttpToolsProtocol]:
    """The protocol class with the settings' limits (uvicorn builds one per connection)."""

    class ConfiguredHttpToolsProtocol(GuardedHttpToolsProtocol):
        max_head_bytes = settings.ingest_max_header_bytes
        head_timeout_seconds = settings.ingest_header_timeout_seconds
        # The pod's bound, split between its worker processes (SO_REUSEPORT spreads
        # connections evenly enough).
        max_connections = settings.per_worker(settings.ingest_max_connections)

    return ConfiguredHttpToolsProtocol
