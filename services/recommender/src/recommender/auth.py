"""Read keys: recommendations reveal what users looked at, so every API call needs one."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from recommender.config import Settings


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def presented(request: Request) -> str | None:
    """`Authorization: Bearer <key>` or `X-Read-Key: <key>`."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-read-key") or None


def key_allowed(key: str, settings: Settings) -> bool:
    """Compared with every configured key in constant time (no early exit)."""
    digest = _digest(key)
    found = False
    for allowed in settings.recommender_read_keys:
        found |= hmac.compare_digest(digest, _digest(allowed.get_secret_value()))
    return found


async def require_read_key(request: Request) -> None:
    settings: Settings = request.app.state.settings
    key = presented(request)
    if key is None:
        raise HTTPException(
            401,
            "a read key is required: Authorization: Bearer <key> or X-Read-Key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not key_allowed(key, settings):
        raise HTTPException(403, "unknown read key")


ReadKey = Annotated[None, Depends(require_read_key)]
