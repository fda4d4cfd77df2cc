"""Arrow types of the logical column types: how lake Parquet holds each table's columns.

The processor writes its data sets with these types, the loader conforms what it reads to
them, and the correction pass reads the lake back with them.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from clickstream_common.schema import LogicalType
from clickstream_common.tables import TableSpec

ARROW_TYPES: dict[LogicalType, pa.DataType] = {
    LogicalType.STRING: pa.string(),
    LogicalType.JSON: pa.string(),  # JSON text; PostgreSQL parses it into JSONB
    LogicalType.LONG: pa.int64(),
    LogicalType.DOUBLE: pa.float64(),
    LogicalType.BOOLEAN: pa.bool_(),
    LogicalType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
}


def arrow_schema(spec: TableSpec, columns: Iterable[str] | None = None) -> pa.Schema:
    """A table's columns (all, or those named, in that order) as an Arrow schema."""
    names = spec.column_names if columns is None else tuple(columns)
    return pa.schema(
        [
            pa.field(name, ARROW_TYPES[spec.column(name).type], nullable=spec.column(name).nullable)
            for name in names
        ]
    )
