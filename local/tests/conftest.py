"""A platform (no services) on free ports in a fresh state dir, reusing the bootstrap caches."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickstream_local.config import StackConfig, default_state_dir
from clickstream_local.stack import Stack


def main_caches() -> tuple[Path, Path]:
    """The cache and bin folders local/bootstrap.sh filled (env overrides as in bootstrap)."""
    state = default_state_dir()
    cache = Path(os.environ.get("CLICKSTREAM_CACHE_DIR", state / "cache"))
    bin_dir = Path(os.environ.get("CLICKSTREAM_BIN_DIR", state / "bin"))
    return cache, bin_dir


@pytest.fixture(scope="module")
def platform_stack() -> Iterator[Stack]:
    cache, bin_dir = main_caches()
    missing = [
        str(p)
        for p in (cache / "kafka-libs", cache / "spark-jars", bin_dir / "versitygw")
        if not p.exists()
    ]
    if missing:
        pytest.fail(f"run `bash local/bootstrap.sh` first; missing: {', '.join(missing)}")
    # mkdtemp makes a 0700 folder; the postgres user must be able to enter it.
    state = Path(tempfile.mkdtemp(prefix="clickstream-local-test-"))
    state.chmod(0o755)
    stack = Stack(
        StackConfig.ephemeral(state, cache_dir=cache, bin_dir=bin_dir),
        progress=lambda line: print(line, flush=True),
    )
    try:
        stack.start(platform=True, services=False)
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)
