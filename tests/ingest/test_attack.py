"""The collector under an attack of large headers and slow clients (bench/ingest/attack.py
at a small scale): what it holds stays bounded, attackers get the named answers, and a
well-behaved client is served throughout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clickstream_local.config import repo_root

pytestmark = pytest.mark.platform

CONNECTIONS = 300
MIB = 1024 * 1024


def test_memory_stays_bounded_under_large_headers_and_slow_clients(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    out = tmp_path / "attack.json"
    subprocess.run(
        [
            sys.executable,
            str(repo_root() / "bench" / "ingest" / "attack.py"),
            f"--connections={CONNECTIONS}",
            "--header-timeout=3",
            "--body-timeout=5",
            f"--bootstrap={kafka_bootstrap}",
            f"--json={out}",
        ],
        check=True,
        timeout=600,
        cwd=repo_root(),
    )
    result = json.loads(out.read_text())
    print(json.dumps(result, indent=1))
    baseline = result["baseline_mib"]
    assert result["collector_alive"]

    heads = result["large headers"]
    # Each connection holds at most INGEST_MAX_HEADER_BYTES (32 KiB) of headers: 300 of them
    # about 10 MiB. Allow three times that for the parser's copies and the allocator.
    assert heads["peak_mib"] - baseline < 3 * CONNECTIONS * 32 / 1024 + 20
    assert heads["attackers_got"] == {
        "HTTP/1.1 408 Request Timeout": CONNECTIONS,
        "HTTP/1.1 431 Request Header Fields Too Large": 20,
    }
    assert result["slowloris"]["attackers_got"] == {"HTTP/1.1 408 Request Timeout": CONNECTIONS}

    bodies = result["slow bodies"]
    # Bodies being read hold at most INGEST_MAX_BUFFERED_BODY_BYTES (64 MiB); those beyond
    # it get 503 at once. Peak resident memory stays within three times the budget.
    assert bodies["peak_mib"] - baseline < 3 * 64
    assert set(bodies["attackers_got"]) == {
        "HTTP/1.1 503 Service Unavailable",
        "HTTP/1.1 408 Request Timeout",
    }
    assert bodies["attackers_got"]["HTTP/1.1 408 Request Timeout"] <= 64  # 1 MiB each

    flood = result["connection flood"]
    assert flood["attackers_got"] == {"HTTP/1.1 408 Request Timeout": CONNECTIONS + 1000}
    # A client that behaves was answered 202 throughout, whatever the attack.
    for name in ("large headers", "slowloris", "slow bodies", "connection flood"):
        assert set(result[name]["probe"]["statuses"]) == {"202"}, name
