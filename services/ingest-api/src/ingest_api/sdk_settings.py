"""Configuration documents that SDKs load before they send anything (pure functions).

* Segment's analytics-next reads `<cdnURL>/v1/projects/<writeKey>/settings` unless its
  settings are passed to `load`: the answer names the collector as the Segment.io
  destination's `apiHost`, so `cdnURL: <collector>` alone points the SDK here. No device-mode
  destinations, no remote plugins or middleware, and the SDK's own telemetry off.
* RudderStack's JavaScript SDK v3 reads `<configUrl>/sourceConfig/?writeKey=...`: an enabled
  source without destinations, its metrics and error reports off.
* Segment's short paths (`/v1/t`, `/v1/p`, ...) are the first letter of the call type.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

SEGMENT_SHORT_PATHS: dict[str, str] = {
    "t": "track",
    "p": "page",
    "i": "identify",
    "g": "group",
    "a": "alias",
    "s": "screen",
}


SNOWPLOW_PREFIX = "/snowplow"
_KEY_IN_PATH = re.compile(r"^(?:/v1/projects/([^/]+)/settings|/snowplow/([^/]+)/.*)$")


def path_write_key(path: str) -> str | None:
    """The write key a path names: Segment's settings document, or the Snowplow endpoint
    prefix `/snowplow/<key>/` (Snowplow trackers have no other place for one)."""
    match = _KEY_IN_PATH.match(path)
    if match is None:
        return None
    return match[1] or match[2] or None


def segment_api_host(base_url: str) -> tuple[str, str]:
    """(protocol, apiHost) for a collector base URL: analytics-next joins them as
    `<protocol>://<apiHost>/<path>`, apiHost being host[:port] and the path to /v1."""
    parts = urlsplit(base_url)
    return parts.scheme or "https", f"{parts.netloc}{parts.path.rstrip('/')}/v1"


def segment_settings(write_key: str, base_url: str) -> dict[str, Any]:
    """The settings document analytics-next (and Segment's mobile SDKs) load for a key."""
    protocol, api_host = segment_api_host(base_url)
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        # The SDK would otherwise post its own telemetry to Segment's API.
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


def rudderstack_source_config(source: str) -> dict[str, Any]:
    """The source configuration RudderStack's JavaScript SDK v3 loads for a write key."""
    return {
        "isHosted": False,
        "source": {
            "id": source,
            "name": source,
            "workspaceId": "clickstream",
            "enabled": True,
            "config": {
                "statsCollection": {
                    "errors": {"enabled": False},
                    "metrics": {"enabled": False},
                }
            },
            "destinations": [],
        },
    }
