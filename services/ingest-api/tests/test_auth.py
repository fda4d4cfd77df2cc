"""Write keys: how they are presented, found and matched to sources and origins."""

import base64

import pytest

from ingest_api.auth import find_key, origin_allowed, presented_key, source_for_key
from ingest_api.config import WriteKey


def test_write_keys_map_to_sources() -> None:
    keys = {"k1": WriteKey(source="web"), "k2": WriteKey(source="ios")}
    assert source_for_key("k2", keys) == "ios"
    assert source_for_key("nope", keys) is None
    assert find_key("k", keys) is None  # a prefix is not a key


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({"authorization": "Bearer abc"}, {}, "abc"),
        ({"authorization": "Basic " + base64.b64encode(b"abc:").decode()}, {}, "abc"),
        ({"authorization": "Basic !!!"}, {}, None),
        ({"x-write-key": "abc"}, {}, "abc"),
        ({}, {"write_key": "abc"}, "abc"),
        ({}, {}, None),
    ],
)
def test_presented_key(headers: dict[str, str], query: dict[str, str], expected: str) -> None:
    assert presented_key(headers, query) == expected


def test_origins_match_with_or_without_a_trailing_slash() -> None:
    assert origin_allowed("https://a.example/", ("https://a.example",))
    assert not origin_allowed("https://evil.example", ("https://a.example",))
    assert origin_allowed("https://any.example", ("*",))
