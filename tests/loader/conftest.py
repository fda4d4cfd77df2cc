"""Fixtures of the loader's integration tests: isolated lakes and loader processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningStack
from tests.loader.harness import Lake, LoaderProcess

LoaderFactory = Callable[..., LoaderProcess]


@pytest.fixture
def loaders(tmp_path: Path) -> Iterator[LoaderFactory]:
    """Start loader processes (`loaders(env)`); each is stopped when the test ends."""
    started: list[LoaderProcess] = []

    def start(env: dict[str, str], name: str = "loader", ready: bool = True) -> LoaderProcess:
        process = LoaderProcess(env, tmp_path, name).start()
        started.append(process)
        return process.wait_ready() if ready else process

    try:
        yield start
    finally:
        for process in started:
            process.stop()


@pytest.fixture
def shared_lake(running_stack: RunningStack) -> Iterator[Lake]:
    """A bucket and database of this test's own on the shared stack."""
    lake = Lake.create(running_stack)
    try:
        yield lake
    finally:
        lake.drop()
