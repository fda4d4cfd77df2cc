"""Write keys: every request names the source it comes from."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from ingest_api.config import Settings, get_settings


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        # Segment-style: the write key is the user name, the password is empty.
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0]
    return request.headers.get("x-write-key") or request.query_params.get("write_key")


def source_for_key(presented: str, keys: dict[str, str]) -> str | None:
    """The source of a write key, comparing against every key in constant time."""
    found: str | None = None
    for key, source in keys.items():
        if hmac.compare_digest(presented.encode(), key.encode()):
            found = source
    return found


def require_source(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> str:
    presented = _presented_key(request)
    if not presented:
        raise HTTPException(401, "missing write key (Authorization: Bearer <key>)")
    source = source_for_key(presented, settings.ingest_write_keys)
    if source is None:
        raise HTTPException(401, "unknown write key")
    return source


Source = Annotated[str, Depends(require_source)]
