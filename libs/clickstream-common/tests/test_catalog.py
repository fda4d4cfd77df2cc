"""The Glue/Athena definitions derive from the TableSpecs and the lake layout (static checks;
tests/aws/test_trino.py queries them with a real engine)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime

import pytest
import sqlglot

from clickstream_common import catalog
from clickstream_common.lake import partition_path, processed_object_key
from clickstream_common.tables import TABLES, MergeMode, TableSpec


@pytest.mark.parametrize("spec", TABLES.values(), ids=list(TABLES))
def test_glue_table_has_the_spec_columns_and_the_lake_partitions(spec: TableSpec) -> None:
    table = catalog.glue_table_input(spec, "lake", date(2025, 3, 1))
    columns = table["StorageDescriptor"]["Columns"]
    assert [c["Name"] for c in columns] == list(spec.column_names)
    assert [k["Name"] for k in table["PartitionKeys"]] == ["date", "hour"]
    assert table["StorageDescriptor"]["Location"] == f"s3://lake/processed/{spec.name}/"
    # The projected location of an hour is where the processor writes that hour's objects.
    when = datetime(2025, 3, 4, 7, tzinfo=UTC)
    template = table["Parameters"]["storage.location.template"]
    projected = template.replace("${date}", f"{when:%Y-%m-%d}").replace("${hour}", f"{when:%H}")
    key = processed_object_key(spec.name, f"{when:%Y-%m-%d}", f"{when:%H}", 1)
    assert f"s3://lake/{key}".startswith(projected + "/")
    assert projected.endswith(partition_path(when))
    assert table["Parameters"]["projection.date.range"] == "2025-03-01,NOW"
    assert table["Parameters"]["projection.hour.digits"] == "2"


def test_every_logical_type_has_a_glue_type() -> None:
    for spec in TABLES.values():
        for column in spec.columns:
            assert column.type in catalog.GLUE_TYPES, (spec.name, column.name)


def test_view_order_is_the_loaders_merge_rule() -> None:
    # The view repeats the loader's rule in SQL: the same batch must win in both.
    from warehouse_loader.sql import _winner

    for spec in TABLES.values():
        assert catalog.winning_order(spec) == _winner(spec)[0], spec.name
    assert {s.merge for s in TABLES.values()} == set(MergeMode)


@pytest.mark.parametrize("spec", TABLES.values(), ids=list(TABLES))
def test_view_sql_parses_as_trino_and_keeps_one_row_per_key(spec: TableSpec) -> None:
    sql = catalog.current_view_sql(spec, "clickstream")
    tree = sqlglot.parse_one(sql, read="trino")
    window = tree.find(sqlglot.exp.Window)
    assert window is not None
    partition = [c.name for c in window.args["partition_by"]]
    assert set(spec.key) <= set(partition)
    # The partition keys join the window only when the key fixes the partition.
    assert ("date" in partition) == (spec.time_column in spec.key)


@pytest.mark.parametrize("spec", TABLES.values(), ids=list(TABLES))
def test_presto_view_text_is_what_athena_stores(spec: TableSpec) -> None:
    text = catalog.presto_view_text(spec, "db")
    assert text.startswith("/* Presto View: ") and text.endswith(" */")
    document = json.loads(base64.b64decode(text.removeprefix("/* Presto View: ")[:-3]))
    assert document["catalog"] == "awsdatacatalog" and document["schema"] == "db"
    assert [c["name"] for c in document["columns"]] == [*spec.column_names, "date", "hour"]
    view = catalog.glue_view_input(spec, "db")
    assert view["TableType"] == "VIRTUAL_VIEW"
    names = [c["Name"] for c in view["StorageDescriptor"]["Columns"]]
    assert names == [c["name"] for c in document["columns"]]


def test_athena_script_parses_and_creates_every_table_and_view() -> None:
    script = catalog.athena_script("lake", "clickstream")
    statements = [s for s in script.split(";\n") if s.strip()]
    assert len(statements) == 1 + 2 * len(TABLES)
    for statement in statements:
        sqlglot.parse_one(statement, read="athena")
    for spec in TABLES.values():
        assert f"`clickstream`.`{spec.name}`" in script
        assert f'"clickstream"."{spec.name}_current"' in script


def test_terraform_catalog_leaves_bucket_and_schema_to_terraform() -> None:
    rendered = catalog.render_terraform_catalog()
    text = json.dumps(rendered)
    assert "__LAKE_BUCKET__" in text
    for view in rendered["views"].values():
        assert "schema" not in view["PrestoView"]
    assert set(rendered["tables"]) == set(TABLES)
