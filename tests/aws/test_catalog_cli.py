"""catalog_cli register against a local Glue endpoint (moto): idempotent, and what Glue then
holds is the generated definition (tests/aws/test_trino.py queries it with Trino)."""

from __future__ import annotations

from datetime import date

import boto3
import pytest

from clickstream_common.catalog import catalog_entries
from clickstream_common.catalog_cli import register
from clickstream_common.tables import TABLES
from clickstream_local.aws_parts import MOTO_ACCESS_KEY, MOTO_SECRET_KEY, Moto


@pytest.fixture
def glue(moto_server: Moto) -> object:
    return boto3.client(
        "glue",
        endpoint_url=moto_server.config.moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id=MOTO_ACCESS_KEY,
        aws_secret_access_key=MOTO_SECRET_KEY,
    )


def test_register_creates_then_updates_every_table_and_view(glue: object) -> None:
    first = register(glue, "lake", "cli_test", date(2026, 1, 1))
    assert first.pop("cli_test") == "created"
    assert set(first.values()) == {"created"} and len(first) == 2 * len(TABLES)
    again = register(glue, "lake", "cli_test", date(2026, 1, 2))
    assert again.pop("cli_test") == "exists"
    assert set(again.values()) == {"updated"}
    for entry in catalog_entries("lake", "cli_test", date(2026, 1, 2)):
        held = glue.get_table(DatabaseName="cli_test", Name=entry.name)["Table"]  # type: ignore[attr-defined]
        wanted = entry.table_input
        assert held["TableType"] == wanted["TableType"]
        assert held.get("Parameters") == wanted["Parameters"]
        assert [c["Name"] for c in held["StorageDescriptor"]["Columns"]] == [
            c["Name"] for c in wanted["StorageDescriptor"]["Columns"]
        ]
        if wanted["TableType"] == "EXTERNAL_TABLE":
            assert held["Parameters"]["projection.date.range"] == "2026-01-02,NOW"
        else:
            assert held["ViewOriginalText"] == wanted["ViewOriginalText"]
