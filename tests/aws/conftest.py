"""Fixtures of the AWS-path tests: kinesis-local and moto on free ports, each under a scratch
state dir of its own, stopped (and removed) when the test module ends."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from clickstream_local.aws_parts import KinesisLocal, Moto
from clickstream_local.components import Component
from clickstream_local.config import REGION, S3_ACCESS_KEY, S3_SECRET_KEY, StackConfig
from clickstream_local.supervisor import Supervisor


@pytest.fixture(scope="module")
def scratch_config() -> Iterator[StackConfig]:
    config = StackConfig.scratch("test-aws", uuid.uuid4().hex[:8])
    config.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield config
    finally:
        shutil.rmtree(config.state_dir, ignore_errors=True)


def _running(part: Component) -> Iterator[Any]:
    try:
        part.start()
        yield part
    finally:
        part.stop()


@pytest.fixture(scope="module")
def kinesis_local(scratch_config: StackConfig) -> Iterator[KinesisLocal]:
    yield from _running(KinesisLocal(scratch_config, Supervisor(scratch_config.state_dir)))


@pytest.fixture(scope="module")
def moto_server(scratch_config: StackConfig) -> Iterator[Moto]:
    yield from _running(Moto(scratch_config, Supervisor(scratch_config.state_dir)))


def kinesis_client(endpoint: str) -> Any:
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
    )


@pytest.fixture
def kinesis_env(kinesis_local: KinesisLocal, monkeypatch: pytest.MonkeyPatch) -> str:
    """The endpoint, with credentials in the environment (what the services' SDKs read)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    return kinesis_local.config.kinesis_endpoint


def new_stream(endpoint: str, shards: int) -> str:
    """A fresh stream of its own for one test (kinesis-local creates it in ~0.5 s)."""
    from tests.conftest import wait_for

    kinesis = kinesis_client(endpoint)
    name = f"t-{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=name, ShardCount=shards)

    def active() -> bool:
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        return summary["StreamStatus"] == "ACTIVE"

    wait_for(active, timeout=30, interval=0.2, what=f"stream {name} to be active")
    return name
