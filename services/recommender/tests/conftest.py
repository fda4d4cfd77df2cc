"""A real redis-server of the test session's own (Debian's, installed by the bootstrap), on a
free port, removed at the end."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator

import pytest

from clickstream_local.alerting import Redis
from clickstream_local.config import StackConfig
from clickstream_local.supervisor import Supervisor


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    config = StackConfig.scratch("test-stacks", f"redis-{uuid.uuid4().hex[:8]}")
    part = Redis(config, Supervisor(config.state_dir))
    part.start()
    try:
        yield f"redis://127.0.0.1:{config.redis_port}/0"
    finally:
        part.stop()
        shutil.rmtree(config.state_dir, ignore_errors=True)
