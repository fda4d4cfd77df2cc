"""The `helm test` hook's script, run against a real collector: it sends one event and passes
only when the collector accepts it (the hook pod cannot run under kwok: nothing runs there)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from deployhelpers import CHART, render

from tests.conftest import RunningStack

pytestmark = pytest.mark.platform


def _hook_script() -> str:
    [pod] = [p for p in render("default-values").of_kind("Pod")]
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["python", "-c"]
    script: str = container["args"][0]
    # The chart embeds files/tests/send_event.py as it is.
    assert script.strip() == (CHART / "files" / "tests" / "send_event.py").read_text().strip()
    return script


def _run(script: str, url: str, write_key: str) -> subprocess.CompletedProcess[str]:
    env = {"COLLECTOR_URL": url, "INGEST_WRITE_KEYS": json.dumps({write_key: "web"})}
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )


def test_hook_script_sends_one_event_and_sees_it_accepted(running_stack: RunningStack) -> None:
    info = running_stack.info
    script = _hook_script()
    ok = _run(script, info.ingest_url, info.write_key)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "202" in ok.stdout and "event accepted" in ok.stdout
    refused = _run(script, info.ingest_url, "not-a-write-key")
    assert refused.returncode == 1 and "401" in refused.stdout, refused.stdout + refused.stderr
