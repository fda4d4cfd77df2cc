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
