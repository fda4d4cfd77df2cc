"""The JSON reading schema, derived from the shared schema (no second copy of the event
definition); the typed casts that follow are `transforms.spark_type_name`."""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import types as T

from clickstream_common.schema import Column, LogicalType


def _parse_type(column: Column) -> T.DataType:
    if column.type is LogicalType.STRUCT:
        return parse_struct_type(column.children)
    # Every leaf is read as text and cast afterwards: one bad value then spoils only its own
    # field (the caller decides between rejecting and cleaning), and the cast's timestamp
    # parser is several times faster than the JSON reader's formatter.
    return T.StringType()


def parse_struct_type(columns: Iterable[Column]) -> T.StructType:
    """The JSON reading schema: the model's fields, leaves as text."""
    return T.StructType([T.StructField(c.name, _parse_type(c), True) for c in columns])
