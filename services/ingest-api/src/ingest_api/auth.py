"""Write keys: every request names the source it comes from."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ingest_api.config import Settings, WriteKey
from ingest_api.errors import ApiError


@dataclass(frozen=True)
class Client:
    """The write key a request presented, resolved to its configuration."""

    source: str
    key: WriteKey
    allowed_origins: tuple[str, ...]
    key_id: str  # a digest of the key: names its rate-limit bucket, never the key itself


def presented_key(
    headers: Mapping[str, str], query: Mapping[str, str] | Callable[[], Mapping[str, str]]
) -> str | None:
    """The write key from Bearer, Basic (user name), X-Write-Key, or ?write_key=.

    `query` may be a function, so the query string is only parsed when no header names a key.
    """
    header = headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        # Segment-style: the write key is the user name, the password is empty.
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    header_key = headers.get("x-write-key")
    if header_key:
        return header_key
    params = query() if callable(query) else query
    return params.get("write_key") or None


def _digest(value: str) -> bytes:
    # Equal-length digests: the comparison leaks neither content nor length of a key.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def find_key(presented: str, keys: Mapping[str, WriteKey]) -> WriteKey | None:
    """The configuration of a write key, comparing against every key in constant time."""
    return _find(_digest(presented), keys)


# Digests of the configured keys, computed once per key mapping (the settings' dict).
_DIGESTS: dict[int, tuple[Mapping[str, WriteKey], tuple[tuple[bytes, WriteKey], ...]]] = {}


def _digests(keys: Mapping[str, WriteKey]) -> tuple[tuple[bytes, WriteKey], ...]:
    cached = _DIGESTS.get(id(keys))
    if cached is None or cached[0] is not keys:
        if len(_DIGESTS) > 64:
            _DIGESTS.clear()
        cached = (keys, tuple((_digest(key), config) for key, config in keys.items()))
        _DIGESTS[id(keys)] = cached
    return cached[1]


def _find(wanted: bytes, keys: Mapping[str, WriteKey]) -> WriteKey | None:
    found: WriteKey | None = None
    for digest, config in _digests(keys):
        if hmac.compare_digest(wanted, digest):
            found = config
    return found


def source_for_key(presented: str, keys: Mapping[str, WriteKey]) -> str | None:
    found = find_key(presented, keys)
    return found.source if found else None


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    return "*" in allowed or origin.rstrip("/") in allowed


def resolve_client(presented: str | None, settings: Settings) -> Client:
    if not presented:
        raise ApiError(
            401,
            "missing_write_key",
            "missing write key: send Authorization: Bearer <key>, Basic auth with the key as "
            "user name, X-Write-Key, or ?write_key=",
        )
    digest = _digest(presented)
    key = _find(digest, settings.ingest_write_keys)
    if key is None:
        raise ApiError(401, "unknown_write_key", "unknown write key")
    return Client(key.source, key, settings.origins_of(key), digest.hex()[:16])


def check_origin(origin: str | None, client: Client) -> None:
    """A browser's request must come from an origin the key allows (403 otherwise)."""
    if origin and not origin_allowed(origin, client.allowed_origins):
        raise ApiError(403, "origin_not_allowed", f"origin {origin} is not allowed for this key")
