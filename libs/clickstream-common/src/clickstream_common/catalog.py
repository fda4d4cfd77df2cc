"""The lake's processed data sets as Glue Catalog tables and Athena DDL, from the TableSpecs.

Every processed data set is Parquet under `processed/<name>/date=YYYY-MM-DD/hour=HH/`
(`clickstream_common.lake`). Its Glue table has the spec's columns, the two partition keys
`date` and `hour`, and Athena partition projection, so a new hour is queryable the moment the
processor writes it: no crawler, no `MSCK REPAIR`, no `BatchCreatePartition`.

A data set holds every version of a row that a micro-batch wrote (a window is rewritten while
it is open; a retried event can arrive twice). Beside each table there is a view,
`<name>_current`, that keeps the row the warehouse keeps: per key, the batch that wins under
the loader's merge rule (the newest for upserted windows, the first for insert-only facts).
The views are stored the way Athena stores its own views (a Presto view in the Glue table),
so Athena and Trino both read them.

Pure functions only; `clickstream_common.catalog_cli` registers the result through the Glue
API, and Terraform creates the same tables from `terraform/.../glue-catalog.json`, which
`render_terraform_catalog()` writes.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from clickstream_common.lake import PROCESSED_PREFIX, partition_path
from clickstream_common.schema import Column, LogicalType
from clickstream_common.tables import TABLES, MergeMode, TableSpec

GLUE_TYPES: dict[LogicalType, str] = {
    LogicalType.STRING: "string",
    LogicalType.LONG: "bigint",
    LogicalType.DOUBLE: "double",
    LogicalType.BOOLEAN: "boolean",
    LogicalType.TIMESTAMP: "timestamp",
    LogicalType.JSON: "string",  # the processor writes free-form objects as JSON text
}
"""Hive/Glue column types of the Parquet files the processor writes (Arrow -> Parquet)."""

# Presto/Trino types of the same columns, for the view definitions Athena stores.
_VIEW_TYPES: dict[LogicalType, str] = {
    LogicalType.STRING: "varchar",
    LogicalType.LONG: "bigint",
    LogicalType.DOUBLE: "double",
    LogicalType.BOOLEAN: "boolean",
    LogicalType.TIMESTAMP: "timestamp(3)",
    LogicalType.JSON: "varchar",
}

DATE_KEY, HOUR_KEY = "date", "hour"
PARTITION_KEYS: tuple[tuple[str, str], ...] = ((DATE_KEY, "string"), (HOUR_KEY, "string"))
"""The lake's partition folders, `date=YYYY-MM-DD/hour=HH` (lake.partition_path)."""

ATHENA_CATALOG = "awsdatacatalog"
"""The catalog name Athena gives the Glue Data Catalog; local Trino uses the same name."""

DEFAULT_DATABASE = "clickstream"
VIEW_SUFFIX = "_current"
DEFAULT_PROJECTION_START = date(2025, 1, 1)

_INPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
_OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"


def _check_partition_layout() -> None:
    # The projection below spells the lake's folder names; fail at import if they drift.
    sample = partition_path(datetime(2024, 1, 2, 3))
    if sample != f"{DATE_KEY}=2024-01-02/{HOUR_KEY}=03":
        raise RuntimeError(f"lake partition layout changed ({sample}); update catalog.py")


_check_partition_layout()


def dataset_prefix(spec: TableSpec) -> str:
    """Key prefix of a data set's objects, with the trailing slash."""
    return f"{PROCESSED_PREFIX}/{spec.name}/"


def glue_columns(spec: TableSpec) -> list[dict[str, str]]:
    return [{"Name": c.name, "Type": GLUE_TYPES[c.type]} for c in spec.columns]


def projection_parameters(location: str, start: date = DEFAULT_PROJECTION_START) -> dict[str, str]:
    """Athena partition projection over `date=YYYY-MM-DD/hour=HH`, from `start` to now.

    `location` is the data set's folder (`s3://bucket/processed/<name>/`).
    """
    return {
        "projection.enabled": "true",
        f"projection.{DATE_KEY}.type": "date",
        f"projection.{DATE_KEY}.format": "yyyy-MM-dd",
        f"projection.{DATE_KEY}.range": f"{start.isoformat()},NOW",
        f"projection.{DATE_KEY}.interval": "1",
        f"projection.{DATE_KEY}.interval.unit": "DAYS",
        f"projection.{HOUR_KEY}.type": "integer",
        f"projection.{HOUR_KEY}.range": "0,23",
        f"projection.{HOUR_KEY}.digits": "2",
        "storage.location.template": (
            f"{location.rstrip('/')}/{DATE_KEY}=${{{DATE_KEY}}}/{HOUR_KEY}=${{{HOUR_KEY}}}"
        ),
    }


def table_parameters(location: str, start: date = DEFAULT_PROJECTION_START) -> dict[str, str]:
    return {
        "EXTERNAL": "TRUE",
        "classification": "parquet",
        "parquet.compression": "ZSTD",
        **projection_parameters(location, start),
    }


def glue_table_input(
    spec: TableSpec, bucket: str, start: date = DEFAULT_PROJECTION_START
) -> dict[str, Any]:
    """The `TableInput` of `glue.create_table` / `update_table` for one data set."""
    location = f"s3://{bucket}/{dataset_prefix(spec)}"
    return {
        "Name": spec.name,
        "Description": f"Processed data set {spec.name} (Parquet, one object per batch and hour)",
        "TableType": "EXTERNAL_TABLE",
        "Parameters": table_parameters(location, start),
        "PartitionKeys": [{"Name": n, "Type": t} for n, t in PARTITION_KEYS],
        "StorageDescriptor": {
            "Columns": glue_columns(spec),
            "Location": location,
            "InputFormat": _INPUT_FORMAT,
            "OutputFormat": _OUTPUT_FORMAT,
            "SerdeInfo": {"SerializationLibrary": _SERDE, "Parameters": {}},
            "Compressed": True,
        },
    }


def _quote(name: str) -> str:
    return f'"{name}"'


def winning_order(spec: TableSpec) -> str:
    """Order of batch_id that puts the row the warehouse keeps first.

    The loader's merge rule (warehouse_loader.sql): upserted windows change until final, so the
    newest batch wins; insert-only facts keep their first row. A parity test compares the two.
    """
    return "ASC" if spec.merge is MergeMode.INSERT_NEW else "DESC"


def view_name(spec: TableSpec) -> str:
    return f"{spec.name}{VIEW_SUFFIX}"


def current_view_sql(spec: TableSpec, database: str | None = None) -> str:
    """SELECT of the rows the warehouse holds: one per key, from the winning batch.

    When the key contains the partitioning time column, the key fixes the partition, so the
    window is partitioned by the partition keys too: a filter on `date`/`hour` then reaches
    the table scan through the view (partition pruning) instead of being applied after it.
    Without `database` the table name is unqualified (a stored view resolves it in its own
    schema).
    """
    columns = ", ".join(_quote(c) for c in spec.column_names)
    partition = [_quote(k) for k in spec.key]
    if spec.time_column in spec.key:
        partition = [_quote(DATE_KEY), _quote(HOUR_KEY), *partition]
    table = _quote(spec.name) if database is None else f"{_quote(database)}.{_quote(spec.name)}"
    return (
        f"SELECT {columns}, {_quote(DATE_KEY)}, {_quote(HOUR_KEY)} FROM ("
        f"SELECT *, row_number() OVER (PARTITION BY {', '.join(partition)} "
        f"ORDER BY {_quote('batch_id')} {winning_order(spec)}) AS row_rank "
        f"FROM {table}) WHERE row_rank = 1"
    )


def _view_columns(spec: TableSpec) -> list[dict[str, str]]:
    columns = [{"name": c.name, "type": _VIEW_TYPES[c.type]} for c in spec.columns]
    return columns + [{"name": n, "type": "varchar"} for n, _ in PARTITION_KEYS]


def presto_view_document(spec: TableSpec) -> dict[str, Any]:
    """The view definition Athena (and Trino) store, without its schema (the database).

    Run as the invoker: whoever queries the view needs access to its table (on AWS: the
    caller's IAM permissions), as with Athena's own views.
    """
    return {
        "originalSql": current_view_sql(spec),
        "catalog": ATHENA_CATALOG,
        "columns": _view_columns(spec),
        "runAsInvoker": True,
    }


def presto_view_text(spec: TableSpec, database: str = DEFAULT_DATABASE) -> str:
    """The view as Athena stores it in Glue: `/* Presto View: <base64 JSON> */`."""
    document = {**presto_view_document(spec), "schema": database}
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    return f"/* Presto View: {encoded} */"


_VIEW_PARAMETERS = {"presto_view": "true", "comment": "Presto View"}
_VIEW_EXPANDED_TEXT = "/* Presto View */"


def _glue_view_columns(spec: TableSpec) -> list[dict[str, str]]:
    return [*glue_columns(spec), *({"Name": n, "Type": t} for n, t in PARTITION_KEYS)]


def glue_view_input(spec: TableSpec, database: str = DEFAULT_DATABASE) -> dict[str, Any]:
    """The `TableInput` of the `<name>_current` view (a VIRTUAL_VIEW, as Athena writes it)."""
    # No Description: Glue's description is the table comment, and a view is recognised by
    # its comment "Presto View" (Trino; Athena writes the same).
    return {
        "Name": view_name(spec),
        "TableType": "VIRTUAL_VIEW",
        "Parameters": dict(_VIEW_PARAMETERS),
        "ViewOriginalText": presto_view_text(spec, database),
        "ViewExpandedText": _VIEW_EXPANDED_TEXT,
        "StorageDescriptor": {"Columns": _glue_view_columns(spec), "SerdeInfo": {}},
    }


def _ddl_type(column: Column) -> str:
    return GLUE_TYPES[column.type]


def athena_ddl(
    spec: TableSpec,
    bucket: str,
    database: str = DEFAULT_DATABASE,
    start: date = DEFAULT_PROJECTION_START,
) -> str:
    """`CREATE EXTERNAL TABLE` in Athena's (Hive) DDL: the same table as glue_table_input."""
    location = f"s3://{bucket}/{dataset_prefix(spec)}"
    columns = ",\n".join(f"  `{c.name}` {_ddl_type(c)}" for c in spec.columns)
    partitions = ", ".join(f"`{n}` {t}" for n, t in PARTITION_KEYS)
    properties = ",\n".join(
        f"  '{k}' = '{v}'"
        for k, v in table_parameters(location, start).items()
        if k not in ("EXTERNAL",)
    )
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{spec.name}` (\n{columns}\n)\n"
        f"PARTITIONED BY ({partitions})\n"
        f"STORED AS PARQUET\n"
        f"LOCATION '{location}'\n"
        f"TBLPROPERTIES (\n{properties}\n)"
    )


def athena_view_ddl(spec: TableSpec, database: str = DEFAULT_DATABASE) -> str:
    return (
        f'CREATE OR REPLACE VIEW "{database}"."{view_name(spec)}" AS\n'
        f"{current_view_sql(spec, database)}"
    )


def athena_script(
    bucket: str, database: str = DEFAULT_DATABASE, start: date = DEFAULT_PROJECTION_START
) -> str:
    """Every statement, in order, for the Athena console or `aws athena start-query-execution`
    (one statement per run)."""
    statements = [f"CREATE DATABASE IF NOT EXISTS `{database}`"]
    for spec in TABLES.values():
        statements.append(athena_ddl(spec, bucket, database, start))
    for spec in TABLES.values():
        statements.append(athena_view_ddl(spec, database))
    return ";\n\n".join(statements) + ";\n"


@dataclass(frozen=True)
class CatalogEntry:
    """One table (or view) of the catalog and its `TableInput`."""

    name: str
    table_input: dict[str, Any]


BUCKET_PLACEHOLDER = "__LAKE_BUCKET__"


def render_terraform_catalog() -> dict[str, Any]:
    """The catalog as data for the Terraform module (`jsondecode`).

    Left for Terraform to fill: the bucket (`__LAKE_BUCKET__` in locations), the projection's
    start date, and each view's schema (the module adds it to `PrestoView` and encodes it).
    """
    return {
        "generated_by": "python -m clickstream_common.catalog_cli terraform",
        "bucket_placeholder": BUCKET_PLACEHOLDER,
        "date_range_parameter": f"projection.{DATE_KEY}.range",
        "tables": {
            spec.name: glue_table_input(spec, BUCKET_PLACEHOLDER) for spec in TABLES.values()
        },
        "views": {
            view_name(spec): {
                "Parameters": dict(_VIEW_PARAMETERS),
                "ViewExpandedText": _VIEW_EXPANDED_TEXT,
                "Columns": _glue_view_columns(spec),
                "PrestoView": presto_view_document(spec),
            }
            for spec in TABLES.values()
        },
    }


def catalog_entries(
    bucket: str, database: str = DEFAULT_DATABASE, start: date = DEFAULT_PROJECTION_START
) -> list[CatalogEntry]:
    """Tables first, then the views that read them."""
    entries = [
        CatalogEntry(spec.name, glue_table_input(spec, bucket, start)) for spec in TABLES.values()
    ]
    entries += [
        CatalogEntry(view_name(spec), glue_view_input(spec, database)) for spec in TABLES.values()
    ]
    return entries
