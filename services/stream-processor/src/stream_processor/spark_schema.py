"""Spark types derived from the shared schema (no second copy of the event definition)."""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import types as T

from clickstream_common.schema import Column, LogicalType

_SPARK_TYPES: dict[LogicalType, T.DataType] = {
    LogicalType.STRING: T.StringType(),
    LogicalType.LONG: T.LongType(),
    LogicalType.DOUBLE: T.DoubleType(),
    LogicalType.BOOLEAN: T.BooleanType(),
    LogicalType.TIMESTAMP: T.TimestampType(),
    # Free-form objects stay JSON text: Spark keeps a nested object's text for a string field.
    LogicalType.JSON: T.StringType(),
}


def spark_type(column: Column) -> T.DataType:
    if column.type is LogicalType.STRUCT:
        return struct_type(column.children)
    return _SPARK_TYPES[column.type]


def struct_type(columns: Iterable[Column]) -> T.StructType:
    return T.StructType([T.StructField(c.name, spark_type(c), c.nullable) for c in columns])


def _parse_type(column: Column) -> T.DataType:
    if column.type is LogicalType.STRUCT:
        return parse_struct_type(column.children)
    # Every leaf is read as text and cast afterwards: one bad value then spoils only its own
    # field (the caller decides between rejecting and cleaning), and the cast's timestamp
    # parser is several times faster than the JSON reader's formatter.
    return T.StringType()


def parse_struct_type(columns: Iterable[Column], only: Iterable[str] | None = None) -> T.StructType:
    """The JSON reading schema: the model's fields, leaves as text; `only` keeps a subset."""
    keep = set(only) if only is not None else None
    return T.StructType(
        [
            T.StructField(c.name, _parse_type(c), True)
            for c in columns
            if keep is None or c.name in keep
        ]
    )
