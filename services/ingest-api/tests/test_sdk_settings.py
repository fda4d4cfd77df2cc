"""The documents SDKs load at start: Segment's settings and RudderStack's source config."""

from ingest_api.sdk_settings import (
    SEGMENT_SHORT_PATHS,
    rudderstack_source_config,
    segment_api_host,
    segment_settings,
)
from ingest_api.segment import CALL_TYPES


def test_segment_settings_point_the_sdk_back_at_the_collector() -> None:
    settings = segment_settings("web-key", "http://127.0.0.1:8080")
    destination = settings["integrations"]["Segment.io"]
    assert destination["apiKey"] == "web-key"
    # analytics-next joins `${protocol}://${apiHost}/${first letter of the call}`.
    assert (destination["protocol"], destination["apiHost"]) == ("http", "127.0.0.1:8080/v1")
    assert list(settings["integrations"]) == ["Segment.io"]  # no device-mode destinations
    assert settings["remotePlugins"] == [] and settings["enabledMiddleware"] == {}
    assert settings["metrics"]["sampleRate"] == 0  # no telemetry to Segment's API


def test_api_host_keeps_a_path_prefix_and_the_scheme() -> None:
    assert segment_api_host("https://collect.example.com/") == ("https", "collect.example.com/v1")
    assert segment_api_host("https://edge.example.com/collector") == (
        "https",
        "edge.example.com/collector/v1",
    )


def test_short_paths_cover_every_call_type() -> None:
    assert set(SEGMENT_SHORT_PATHS.values()) == set(CALL_TYPES)
    assert all(call.startswith(letter) for letter, call in SEGMENT_SHORT_PATHS.items())


def test_rudderstack_source_config_is_what_the_sdk_validates() -> None:
    config = rudderstack_source_config("web")
    source = config["source"]
    # The SDK refuses a config without an id, a config object and a destinations array.
    assert source["id"] == "web" and isinstance(source["config"], dict)
    assert source["destinations"] == [] and source["enabled"] is True
    assert source["config"]["statsCollection"]["metrics"]["enabled"] is False
