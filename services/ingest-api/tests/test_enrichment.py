import ipaddress
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from clickstream_common.schema import DEFAULT_CLOCK_POLICY, EnrichedEvent, Event
from ingest_api.enrichment import (
    RequestFacts,
    campaign_of,
    client_address,
    corrected_event_time,
    enrich,
    host_of,
    parse_networks,
    truncate_ip,
    user_agent_info,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TOL = timedelta(seconds=2)
MAX = timedelta(days=7)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1"
)
WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36"
)
ANDROID_PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Mobile Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def facts(**overrides: object) -> RequestFacts:
    values: dict[str, object] = {
        "source": "web",
        "received_at": T0,
        "client_ip": "203.0.113.0",
        "fallback_user_agent": None,
        "tolerance": TOL,
        "maximum": MAX,
        "clock_policy": DEFAULT_CLOCK_POLICY,
    }
    values.update(overrides)
    return RequestFacts(**values)  # type: ignore[arg-type]


def test_small_offsets_are_network_delay_and_not_applied() -> None:
    assert corrected_event_time(T0, T0, T0 + timedelta(seconds=1), TOL, MAX) == T0


def test_device_clock_offset_is_applied() -> None:
    # The device clock runs 10 minutes slow: its times are shifted forward by 10 minutes.
    sent = T0 + timedelta(minutes=1)
    received = sent + timedelta(minutes=10)
    assert corrected_event_time(T0, sent, received, TOL, MAX) == T0 + timedelta(minutes=10)


def test_absurd_clocks_are_not_trusted() -> None:
    sent = T0 - timedelta(days=400)
    assert corrected_event_time(T0, sent, T0, TOL, MAX) == T0


@pytest.mark.parametrize(
    ("address", "v4", "v6", "expected"),
    [
        ("198.51.100.77", 24, 48, "198.51.100.0"),
        ("198.51.100.77", 32, 48, "198.51.100.77"),
        ("198.51.100.77", 0, 48, None),
        ("2001:db8:abcd:12:1:2:3:4", 24, 48, "2001:db8:abcd::"),
        ("2001:db8:abcd:12:1:2:3:4", 24, 128, "2001:db8:abcd:12:1:2:3:4"),
    ],
)
def test_client_ips_are_truncated(address: str, v4: int, v6: int, expected: str | None) -> None:
    assert truncate_ip(ipaddress.ip_address(address), v4, v6) == expected


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    trusted = parse_networks(["10.0.0.0/8", "127.0.0.1/32"])
    chain = "198.51.100.9, 203.0.113.5, 10.1.1.1"
    # From an untrusted peer the header is ignored: anyone can write it.
    assert str(client_address("192.0.2.1", chain, trusted)) == "192.0.2.1"
    # Through our proxies: the first untrusted hop from the right (not the spoofable left).
    assert str(client_address("10.2.2.2", chain, trusted)) == "203.0.113.5"
    # Only trusted hops: the leftmost.
    assert str(client_address("127.0.0.1", "10.9.9.9", trusted)) == "10.9.9.9"
    # Garbage beyond our proxies stops the walk at the last believable address.
    assert str(client_address("10.2.2.2", "nonsense, 10.1.1.1", trusted)) == "10.1.1.1"
    assert str(client_address("::ffff:198.51.100.3", None, trusted)) == "198.51.100.3"


@pytest.mark.parametrize(
    ("ua", "device_class", "browser", "os"),
    [
        (IPHONE, "mobile", "Mobile Safari", "iOS"),
        (IPAD, "tablet", "Mobile Safari", "iOS"),
        (WINDOWS_CHROME, "desktop", "Chrome", "Windows"),
        (ANDROID_TABLET, "tablet", "Chrome", "Android"),
        (ANDROID_PHONE, "mobile", "Chrome", "Android"),
        (GOOGLEBOT, "bot", "Googlebot", None),
    ],
)
def test_user_agents_are_parsed(ua: str, device_class: str, browser: str, os: str | None) -> None:
    info = user_agent_info(ua)
    assert info["device_class"] == device_class
    assert info["browser_family"] == browser
    assert info.get("os_family") == os
    assert info["is_bot"] is (device_class == "bot")


def test_headless_browsers_are_bots() -> None:
    ua = WINDOWS_CHROME.replace("Chrome/", "HeadlessChrome/")
    assert user_agent_info(ua)["is_bot"] is True


def test_campaign_and_referrer_host() -> None:
    url = "https://shop.example/p?utm_source=News&utm_medium=email&utm_campaign=bf&utm_term=x"
    assert campaign_of(url) == {"source": "News", "medium": "email", "name": "bf", "term": "x"}
    assert campaign_of("https://shop.example/p?q=1") is None
    assert host_of("https://WWW.Google.com/search?q=a") == "www.google.com"
    assert host_of("not a url") is None


def test_enrich_keeps_fields_and_flags_future_events() -> None:
    event = Event.model_validate(
        {
            "event_type": "click",
            "timestamp": (T0 + timedelta(hours=1)).isoformat(),
            "user_id": "u1",
            "page_url": "https://s.example/?utm_source=a",
            "referrer": "https://ref.example/x",
            "context": {"user_agent": IPHONE},
        }
    )
    enriched = enrich(event, facts(), None, "generated")
    assert enriched["event_id"]
    assert enriched["timestamp"] == event.timestamp
    assert enriched["future_dated"] is True
    assert enriched["campaign"] == {"source": "a"}
    assert enriched["referrer_host"] == "ref.example"
    assert enriched["user_agent_info"]["device_class"] == "mobile"
    # What is published is a valid EnrichedEvent, as the stream processor reads it.
    parsed = EnrichedEvent.model_validate_json(orjson.dumps(enriched, option=orjson.OPT_UTC_Z))
    assert parsed.user_key == "u1"
    assert parsed.client_ip == "203.0.113.0"
    assert parsed.page_url == event.page_url


def test_enrich_never_overwrites_client_fields() -> None:
    event = Event.model_validate(
        {"event_id": "e-1", "event_type": "page_view", "timestamp": T0, "anonymous_id": "a"}
    )
    sent = T0 + timedelta(minutes=1)  # device clock 10 minutes slow
    enriched = enrich(event, facts(received_at=sent + timedelta(minutes=10)), sent, "generated")
    assert enriched["event_id"] == "e-1"
    assert enriched["timestamp"] == T0
    assert enriched["event_time"] == T0 + timedelta(minutes=10)
    assert enriched["sent_at"] == sent
    assert enriched["future_dated"] is False


def test_fallback_user_agent_only_when_the_event_has_none() -> None:
    event = Event.model_validate({"event_type": "click", "timestamp": T0, "user_id": "u"})
    enriched = enrich(event, facts(fallback_user_agent=GOOGLEBOT), None, "generated")
    assert enriched["user_agent_info"]["is_bot"] is True
    assert "user_agent_info" not in enrich(event, facts(), None, "generated")
