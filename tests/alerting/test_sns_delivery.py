"""Alerts reach people: the shipped rules and routes, through a real Prometheus and Alertmanager,
to SNS (a local endpoint that speaks its protocol: moto server) and on to a subscribed SQS queue.

* An anomaly: the simulator loses a whole event type mid-run (a tracking break); the detector
  (5-second buckets here, a minute in production) scores it, `anomaly_active` rises, the
  anomaly alert is routed to SNS, and the queue receives it.
* A stopped processor: with traffic still flowing, `ClickstreamProcessorStalled` must arrive
  within its `for:` (2 minutes) after the condition holds, which is once the 2-minute rate
  window has no sample left, plus one evaluation and Alertmanager's group wait.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from clickstream_local.components import child_env
from clickstream_local.config import free_ports, repo_root
from clickstream_local.demo import simulator_command
from clickstream_local.supervisor import terminate, wait_until

pytestmark = pytest.mark.platform

REGION = "us-east-1"
# The shipped rule: rate window + for (clickstream.rules.yaml, ClickstreamProcessorStalled).
STALLED_WINDOW_SECONDS = 120
STALLED_FOR_SECONDS = 120
# Prometheus evaluates every 2 s locally; Alertmanager's group_wait for critical alerts is 5 s;
# delivery and a scrape that straddles the stop: allowance for a loaded machine.
ONE_EVALUATION_AND_DELIVERY = 45


@pytest.fixture
def sns() -> Iterator[dict[str, Any]]:
    """moto server as SNS + SQS: a topic with a queue subscribed (raw delivery off: the SNS
    envelope with Subject and Message arrives, as on AWS)."""
    (port,) = free_ports(1)
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        kwargs = {
            "endpoint_url": url,
            "region_name": REGION,
            "aws_access_key_id": "test",
            "aws_secret_access_key": "test",
        }
        sns_client = boto3.client("sns", **kwargs)
        sqs = boto3.client("sqs", **kwargs)

        def up() -> bool:
            try:
                sns_client.list_topics()
                return True
            except Exception:
                return False

        wait_until(up, 30, "moto server")
        topic = sns_client.create_topic(Name="clickstream-alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="clickstream-alerts")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns_client.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        yield {"url": url, "topic": topic, "queue": queue, "sqs": sqs}
    finally:
        terminate(server)


def received(sqs: Any, queue: str, seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    answer = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    for message in answer.get("Messages", []):
        seen.append(json.loads(message["Body"]))
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return seen


def alert_names(seen: list[dict[str, Any]]) -> list[str]:
    return [str(m.get("Subject", "")) + " " + str(m.get("Message", "")) for m in seen]


def test_alerts_reach_sns(stack_factory: Any, sns: dict[str, Any]) -> None:
    targets = {
        "sns_topic_arn": sns["topic"],
        "sns_api_url": sns["url"],
        "sns_region": REGION,
        "sns_access_key": "test",
        "sns_secret_key": "test",
    }
    detector = {
        "ANOMALY_BUCKET_SECONDS": "5",
        "ANOMALY_GRACE_SECONDS": "2",
        "ANOMALY_MIN_HISTORY": "12",
        "ANOMALY_WINDOW": "30",
        "ANOMALY_STARTING_OFFSETS": "latest",
    }
    running = stack_factory(
        services=("ingest-api", "stream-processor", "anomaly-detector"),
        env={"anomaly-detector": detector},
        alert_targets=targets,
    )
    stack, info = running.stack, running.info
    # Steady traffic; 2.5 minutes in, the tracking of page views breaks for 3 minutes.
    simulator = subprocess.Popen(
        simulator_command(
            info.ingest_url, info.write_key, 40, 900, "--incident", "tracking_break@2.5+3:page_view"
        ),
        env=child_env(),
        cwd=repo_root(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        check_anomaly_alert(sns)
        check_freshness_alert(stack, sns)
    finally:
        terminate(simulator)


def check_anomaly_alert(sns: dict[str, Any]) -> None:
    seen: list[dict[str, Any]] = []
    wait_until(
        lambda: any(
            "ClickstreamAnomalyDetected" in text and "events:page_view" in text
            for text in alert_names(received(sns["sqs"], sns["queue"], seen))
        ),
        timeout=420,
        what="the anomaly alert in the SQS queue",
        interval=1,
    )
    message = next(m for m in seen if "ClickstreamAnomalyDetected" in m.get("Subject", ""))
    assert message["TopicArn"] == sns["topic"]
    assert message["Subject"].startswith("[FIRING]")
    assert "series=events:page_view" in message["Message"]


def check_freshness_alert(stack: Any, sns: dict[str, Any]) -> None:
    seen: list[dict[str, Any]] = []
    stack.components["stream-processor"].stop()
    stopped = time.monotonic()
    deadline = STALLED_WINDOW_SECONDS + STALLED_FOR_SECONDS + ONE_EVALUATION_AND_DELIVERY
    wait_until(
        lambda: any(
            "ClickstreamProcessorStalled" in text
            for text in alert_names(received(sns["sqs"], sns["queue"], seen))
        ),
        timeout=deadline,
        what=f"ClickstreamProcessorStalled in the queue within {deadline}s of the stop",
        interval=1,
    )
    elapsed = time.monotonic() - stopped
    print(f"freshness alert in the queue {elapsed:.0f}s after the processor stopped")
    message = next(m for m in seen if "ClickstreamProcessorStalled" in m.get("Subject", ""))
    assert "[FIRING]" in message["Subject"]
    assert "none reaches the lake" in message["Message"]
