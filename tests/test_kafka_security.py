"""Kafka refusing the credentials: every service stays up, says why, and reports not ready.

The platform's broker runs its TLS + SASL/SCRAM-SHA-512 listener (clickstream_local.kafka_tls)
and the three services are given a wrong password. A crash loop would lose the probes and
hide the reason; instead each one keeps answering /healthz, answers /readyz with 503, and
logs the cause. (The end-to-end test runs the whole pipeline over the same listener with the
right password: tests/test_end_to_end.py.)
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import StackFactory, wait_for

pytestmark = pytest.mark.platform

SERVICES = ("ingest-api", "stream-processor", "warehouse-loader")
# What each service logs about the refusal.
REASONS = {
    "ingest-api": "SaslAuthenticationFailed",
    "stream-processor": "kafka unavailable",
    "warehouse-loader": "notification source unavailable",
}


def test_wrong_credentials_give_a_clear_error_and_not_ready(stack_factory: StackFactory) -> None:
    running = stack_factory(
        services=SERVICES,
        kafka_security="SASL_SSL",
        env={name: {"KAFKA_SASL_PASSWORD": "not-the-password"} for name in SERVICES},
    )
    stack, config = running.stack, running.stack.config
    ready_urls = {
        "ingest-api": f"{config.ingest_url}/readyz",
        "stream-processor": f"http://127.0.0.1:{config.processor_metrics_port}/readyz",
        "warehouse-loader": f"http://127.0.0.1:{config.loader_metrics_port}/readyz",
    }

    def logged(name: str) -> bool:
        return REASONS[name] in stack.supervisor.log_file(name).read_text(errors="replace")

    for name in SERVICES:
        wait_for(lambda name=name: logged(name), 180, what=f"{name} to log why Kafka refused it")
    # For a while (several retries of each), nothing restarts and nothing becomes ready.
    pids = {name: stack.components[name].pid() for name in SERVICES}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for name in SERVICES:
            assert stack.components[name].pid() == pids[name] is not None, f"{name} exited"
            assert httpx.get(ready_urls[name], timeout=5).status_code == 503, name
        time.sleep(2)
    # The ingest API refuses events with 503 (retry later), never 5xx of another kind.
    answer = httpx.post(
        f"{config.ingest_url}/v1/events",
        json={"event_type": "page_view", "anonymous_id": "a", "timestamp": "2026-01-01T00:00:00Z"},
        headers={"Authorization": f"Bearer {running.info.write_key}"},
        timeout=30,
    )
    assert answer.status_code == 503, answer.text
