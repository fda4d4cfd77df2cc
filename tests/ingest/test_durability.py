"""The start-up check of what a 2xx guarantees (#20), against the real broker.

The local platform has one broker: replication factor 1 and min.insync.replicas 1, below the
documented minimum (3 and 2). The collector must say so, and refuse to start when
INGEST_REQUIRE_DURABLE_TOPIC asks it to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.ingest.conftest import start_collector, stop_collector

pytestmark = pytest.mark.platform


def log_events(path: Path, kind: str) -> list[dict[str, Any]]:
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("event") == kind:
            entries.append(entry)
    return entries


def test_one_broker_is_reported_weaker_than_documented(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    process, collector = start_collector(kafka_bootstrap, tmp_path)  # ready: it still serves
    stop_collector(process)
    found = {
        (e["topic"], e["setting"], e["actual"], e["required"])
        for e in log_events(collector.log_path, "durability_shortfall")
    }
    assert found == {
        (topic, setting, 1, required)
        for topic in (collector.events_topic, collector.dlq_topic)
        for setting, required in (("replication.factor", 3), ("min.insync.replicas", 2))
    }


def test_required_durability_refuses_to_start(kafka_bootstrap: str, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="collector exited"):
        start_collector(kafka_bootstrap, tmp_path, {"INGEST_REQUIRE_DURABLE_TOPIC": "true"})
    [log] = tmp_path.glob("ingest-*.log")
    text = log.read_text()
    assert "INGEST_REQUIRE_DURABLE_TOPIC is set" in text
    assert "replication.factor=1, documented minimum 3" in text
    assert all(e["refusing"] for e in log_events(log, "durability_shortfall"))
    assert "Application startup complete" not in text  # refused before serving


def test_required_durability_starts_when_the_minimum_is_met(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # A deployment that documents one replica (as the local platform does) meets it.
    process, collector = start_collector(
        kafka_bootstrap,
        tmp_path,
        {
            "INGEST_REQUIRE_DURABLE_TOPIC": "true",
            "INGEST_DURABLE_MIN_REPLICATION_FACTOR": "1",
            "INGEST_DURABLE_MIN_INSYNC_REPLICAS": "1",
        },
    )
    stop_collector(process)
    assert log_events(collector.log_path, "durability_shortfall") == []
    [ok] = log_events(collector.log_path, "durability_ok")
    assert ok["topics"] == {collector.events_topic: [1, 1], collector.dlq_topic: [1, 1]}
