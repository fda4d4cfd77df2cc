"""ASGI pieces shared by the services' plain middlewares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]


class StatusNotingSend:
    """An ASGI `send` that passes every message on and keeps the answer's status: 500 until
    an answer starts (an app that fails before answering is counted as an error)."""

    __slots__ = ("send", "status")

    def __init__(self, send: Callable[[Message], Awaitable[None]]) -> None:
        self.send = send
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)
