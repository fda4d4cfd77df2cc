"""Values the warehouse cannot store, from a producer that bypassed the collector: they cost
only their own batch, every later batch loads, and the quarantine replays after a fix.

Real versitygw, Kafka and PostgreSQL, the real loader process and its replay command.
"""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from clickstream_local.components import child_env
from clickstream_local.config import repo_root
from tests.conftest import wait_for
from tests.loader.conftest import LoaderFactory
from tests.loader.harness import Lake, wait_until_equal
from tests.loader.lakedata import (
    LakeBatch,
    build_batches,
    expected_tables,
    snapshot,
    write_all,
    write_objects,
)

pytestmark = pytest.mark.platform


def huge_path(seed: int) -> str:
    """About 9 KB of random CJK text: past the btree limit (2704 bytes) even compressed."""
    rng = random.Random(seed)
    return "/" + "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(3000))


def loader_cli(lake: Lake, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m warehouse_loader <args>` with the lake's loader settings."""
    return subprocess.run(
        [sys.executable, "-m", "warehouse_loader", *args],
        env=child_env(lake.loader_env() | {"PYTHONUNBUFFERED": "1"}),
        cwd=repo_root(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def without(batches: list[LakeBatch], removed: set[tuple[int, str]]) -> list[LakeBatch]:
    return [
        LakeBatch(b.batch_id, {d: r for d, r in b.rows.items() if (b.batch_id, d) not in removed})
        for b in batches
    ]


def test_refused_values_cost_only_their_batch_and_replay_after_a_fix(
    shared_lake: Lake, loaders: LoaderFactory
) -> None:
    lake = shared_lake
    now = datetime.now(UTC)
    batches = build_batches(now - timedelta(minutes=60), now, 1200, 5, seed=71)
    clean = {
        (b.batch_id, d): [dict(r) for r in rows] for b in batches for d, rows in b.rows.items()
    }
    poisoned = build_batches(now - timedelta(minutes=60), now, 1200, 5, seed=71)
    # Batch 101: a page path of a few KB of non-ASCII text in page_views_minute's key
    # (SQLSTATE 54000) and a NUL byte in an event's search text (22021); batch 102: \u0000
    # inside an event's JSON properties (22P05).
    poisoned[1].rows["page_views_minute"][0]["page_path"] = huge_path(1)
    poisoned[1].rows["events"][3]["search_query"] = "shoes\x00socks"
    poisoned[2].rows["events"][5]["properties"] = '{"note": "a\\u0000b"}'
    refused = {
        (101, "page_views_minute"): "54000",
        (101, "events"): "22021",
        (102, "events"): "22P05",
    }

    loader = loaders(lake.loader_env())
    markers = write_all(lake.s3, lake.bucket, poisoned)
    # Everything else, including every batch after the refused ones, is in the warehouse.
    expected = expected_tables(without(batches, set(refused)))
    wait_until_equal(lambda: snapshot(lake), expected, 120, "every batch but the refused ones")

    def quarantined() -> dict[tuple[int, str], str] | None:
        rows = {(r[3], r[2]): r[6] for r in lake.ledger() if r[4] == "quarantined"}
        return rows if len(rows) == len(refused) else None

    found = wait_for(quarantined, 60, what="the refused batches to be quarantined")
    for batch, state in refused.items():
        assert f"SQLSTATE {state}" in found[batch], (batch, found[batch])
    for (_, table), state in refused.items():
        assert loader.metric("loader_refused_batches_total", table=table, sqlstate=state) >= 1
    assert len(lake.ledger()) == markers

    # The fix: whoever wrote the bad values rewrites the batch's objects (same names, same
    # row counts); the markers, and their ledger rows, stay as they are.
    for batch_id, dataset in refused:
        write_objects(lake.s3, lake.bucket, dataset, batch_id, clean[(batch_id, dataset)])
    listing = loader_cli(lake, "quarantined")
    assert listing.returncode == 0, listing.stderr
    assert "3 quarantined batch(es)" in listing.stdout
    replay = loader_cli(lake, "replay", "--all")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "3 of 3 batch(es) loaded" in replay.stdout
    assert snapshot(lake) == expected_tables(batches)
    assert {r[4] for r in lake.ledger()} == {"loaded"}
    assert len(lake.ledger()) == markers


def test_a_batch_still_refused_after_replay_is_quarantined_again(
    shared_lake: Lake, loaders: LoaderFactory
) -> None:
    lake = shared_lake
    now = datetime.now(UTC)
    batches = build_batches(now - timedelta(minutes=30), now, 400, 2, seed=73)
    batches[0].rows["page_views_minute"][0]["page_path"] = huge_path(2)
    loaders(lake.loader_env())
    write_all(lake.s3, lake.bucket, batches)
    wait_for(lambda: any(r[4] == "quarantined" for r in lake.ledger()), 90, what="the quarantine")
    replay = loader_cli(lake, "replay", "--table", "page_views_minute")
    assert replay.returncode == 1, replay.stdout + replay.stderr
    assert "0 of 1 batch(es) loaded" in replay.stdout
    [row] = [r for r in lake.ledger() if r[4] == "quarantined"]
    assert "SQLSTATE 54000" in row[6]
