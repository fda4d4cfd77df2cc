"""The collector core's request and response: plain values, free of any web framework.

The adapters (`asgi.py` for the fast path, `routes/` for FastAPI) turn what their server hands
them into a `Request` and a `Response` back into what it sends; everything between is the core
(`collector.py`), which tests can drive with nothing but these two types.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson

JSON = "application/json"


class Disconnected(Exception):
    """The client went away before its request body was complete."""


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query_string: str  # as received (percent-encoded), without the "?"
    headers: Mapping[str, str]  # lower-case names; the first value of a repeated header
    peer: str | None  # the connection's remote address
    body: AsyncIterable[bytes]  # the raw body (still gzip-encoded if it was sent so)
    request_id: str = ""  # what the logs and dead letters name the request by

    def query_items(self) -> list[tuple[str, str]]:
        """The query's (name, value) pairs in order, percent-decoded (UTF-8, bad bytes
        replaced), blank values kept."""
        if not self.query_string:
            return []
        return parse_qsl(self.query_string, keep_blank_values=True)

    def query_value(self, name: str) -> str | None:
        """The last value of a query parameter, as Starlette's `query_params` reads it."""
        if f"{name}=" not in self.query_string:  # cheap: most requests carry no query
            return None
        found = None
        for key, value in self.query_items():
            if key == name:
                found = value
        return found


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    media_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    # The origins the request's write key allows, once it is known: the CORS middleware
    # answers with them (None: no key was resolved).
    allowed_origins: tuple[str, ...] | None = None

    def header_pairs(self) -> list[tuple[bytes, bytes]]:
        """The raw ASGI headers, in the order a Starlette `Response` sends them."""
        pairs = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]
        pairs.append((b"content-length", str(len(self.body)).encode()))
        pairs.append((b"content-type", self.media_type.encode("latin-1")))
        return pairs


def json_response(
    status: int,
    document: object,
    headers: Iterable[tuple[str, str]] = (),
    allowed_origins: tuple[str, ...] | None = None,
) -> Response:
    return Response(status, orjson.dumps(document), JSON, tuple(headers), allowed_origins)


def first_values(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI header pairs as a mapping: lower-case names, the first value of a repeated
    header winning (as Starlette's `Headers.get`)."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        if key not in headers:
            headers[key] = value.decode("latin-1")
    return headers


async def body_of(data: bytes) -> AsyncIterator[bytes]:
    """A body that is already in memory (tests, and adapters that buffered it)."""
    if data:
        yield data
