"""What the collector adds to an event, alongside (never over) the client's fields.

Pure functions: the routes hand them what the request carried and publish what they return.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ua_parser import parse as parse_ua

from clickstream_common.schema import EARLIEST_TIME, LATEST_TIME, ClockPolicy, Event

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def corrected_event_time(
    timestamp: datetime,
    sent_at: datetime | None,
    received_at: datetime,
    tolerance: timedelta,
    maximum: timedelta,
) -> datetime:
    """Device time shifted by the device's clock offset (received_at - sent_at).

    Offsets within `tolerance` are mostly network delay and are not applied; offsets beyond
    `maximum` come from a broken clock and are not trusted either, nor is a correction that
    would leave the range of times the pipeline keeps.
    """
    if sent_at is None:
        return timestamp
    offset = received_at - sent_at
    if abs(offset) <= tolerance or abs(offset) > maximum:
        return timestamp
    try:
        corrected = timestamp + offset
    except OverflowError:
        return timestamp
    return corrected if EARLIEST_TIME <= corrected <= LATEST_TIME else timestamp


# --- client address -------------------------------------------------------------------------


def parse_networks(values: Sequence[str]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IpNetwork]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address: the peer, or, behind trusted proxies, the nearest untrusted hop.

    X-Forwarded-For is only believed from a trusted peer, and read right to left: each
    trusted proxy appends the address it received from, so the first untrusted address
    from the right is the one no proxy of ours can vouch beyond.
    """
    address = _address(peer) if peer else None
    if address is None or not forwarded_for or not any(address in n for n in trusted):
        return address
    for hop in reversed(forwarded_for.split(",")):
        candidate = _address(hop)
        if candidate is None:
            break  # garbage from beyond our proxies: keep the last address we can trust
        address = candidate
        if not any(candidate in n for n in trusted):
            break
    return address


def truncate_ip(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, v4_prefix: int, v6_prefix: int
) -> str | None:
    """The address cut to its network (IPv4 /24, IPv6 /48 by default); a prefix of 0 drops it."""
    if address is None:
        return None
    prefix = v4_prefix if address.version == 4 else v6_prefix
    if prefix == 0:
        return None
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return str(network.network_address)


# --- user agent -----------------------------------------------------------------------------

_BOT = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|headlesschrome|phantomjs|lighthouse|facebookexternalhit"
    r"|embedly|pingdom|uptimerobot",
    re.IGNORECASE,
)
_DESKTOP_OS = frozenset(
    {
        "Windows",
        "Mac OS X",
        "Linux",
        "Ubuntu",
        "Fedora",
        "Debian",
        "Chrome OS",
        "FreeBSD",
        "OpenBSD",
        "NetBSD",
        "Solaris",
        "Red Hat",
        "SUSE",
        "Mint",
        "Arch Linux",
    }
)
_MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "HarmonyOS"})


def _version(*parts: str | None) -> str | None:
    present = [p for p in parts if p]
    return ".".join(present)[:256] if present else None


def device_class(ua: str, os_family: str | None, device: Any, is_bot: bool) -> str:
    if is_bot:
        return "bot"
    lowered = ua.lower()
    family = device.family if device else None
    brand = (device.brand or "") if device else ""
    if (
        family == "iPad"
        or "tablet" in brand.lower()
        or "tablet" in lowered
        or (os_family == "Android" and "mobile" not in lowered)
    ):
        return "tablet"
    if family in ("iPhone", "iPod") or "mobi" in lowered or os_family in _MOBILE_OS:
        return "mobile"
    if os_family in _DESKTOP_OS:
        return "desktop"
    return "other"


@lru_cache(maxsize=8192)
def user_agent_info(ua: str) -> dict[str, Any]:
    """Browser, OS, device, device class and bot flag (cached: real traffic repeats UAs).

    The returned dict is shared between calls; callers must not change it.
    """
    result = parse_ua(ua[:1024])
    agent, os, device = result.user_agent, result.os, result.device
    is_bot = (device is not None and device.family == "Spider") or bool(_BOT.search(ua))
    info: dict[str, Any] = {
        "browser_family": agent.family[:256] if agent else None,
        "browser_version": _version(agent.major, agent.minor, agent.patch) if agent else None,
        "os_family": os.family[:256] if os else None,
        "os_version": _version(os.major, os.minor, os.patch) if os else None,
        "device_family": device.family[:256] if device else None,
        "device_class": device_class(ua, os.family if os else None, device, is_bot),
        "is_bot": is_bot,
    }
    return {k: v for k, v in info.items() if v is not None}


# --- URLs -----------------------------------------------------------------------------------

_UTM = {
    "utm_source": "source",
    "utm_medium": "medium",
    "utm_campaign": "name",
    "utm_term": "term",
    "utm_content": "content",
}


@lru_cache(maxsize=4096)
def campaign_of(url: str) -> dict[str, str] | None:
    """UTM parameters of a page URL as a Campaign (source/medium/name/term/content)."""
    if "utm_" not in url:
        return None
    try:
        query = urlsplit(url).query
    except ValueError:
        return None
    campaign: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=False):
        field = _UTM.get(name.lower())
        if field and field not in campaign and value.strip():
            campaign[field] = value.strip()[:256]
    return campaign or None


@lru_cache(maxsize=4096)
def host_of(url: str) -> str | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host[:256] if host else None


# --- the enriched event ---------------------------------------------------------------------


@dataclass(frozen=True)
class RequestFacts:
    """What the collector knows about a request, the same for each of its events."""

    source: str
    received_at: datetime
    client_ip: str | None
    # The request's User-Agent, used when an event carries none of its own and the request
    # came straight from a browser (a beacon or pixel), not from a server-side SDK.
    fallback_user_agent: str | None
    tolerance: timedelta
    maximum: timedelta
    clock_policy: ClockPolicy


def enrich(
    event: Event, facts: RequestFacts, sent_at: datetime | None, event_id: str
) -> dict[str, Any]:
    """The event as published: its own fields plus the collector's (an EnrichedEvent).

    `event_id` is used when the client sent none. Built as a plain dict from the already
    validated event, so an event is validated once.
    """
    fields = event.model_dump(exclude_none=True)
    if "event_id" not in fields:
        fields["event_id"] = event_id
    corrected = corrected_event_time(
        event.timestamp, sent_at, facts.received_at, facts.tolerance, facts.maximum
    )
    # A clock far off (a phone set years ahead) must not move the aggregates' time: such
    # an event is kept at its receive time, with the time it claimed alongside.
    event_time, crossed = facts.clock_policy.bound(corrected, facts.received_at)
    fields["source"] = facts.source
    fields["received_at"] = facts.received_at
    if sent_at is not None:
        fields["sent_at"] = sent_at
    fields["event_time"] = event_time
    fields["future_dated"] = corrected > facts.received_at + facts.tolerance
    if crossed is not None:
        fields["original_event_time"] = corrected
        fields["event_time_adjusted"] = crossed
    if facts.client_ip is not None:
        fields["client_ip"] = facts.client_ip
    if event.page_url:
        campaign = campaign_of(event.page_url)
        if campaign:
            fields["campaign"] = campaign
    ua = (event.context.user_agent if event.context else None) or facts.fallback_user_agent
    if ua:
        fields["user_agent_info"] = user_agent_info(ua)
    if event.referrer:
        host = host_of(event.referrer)
        if host:
            fields["referrer_host"] = host
    return fields
