"""Arrow side of a load (pure): check a processed object against its table, render CSV.

An object that fails these checks is poison: retrying cannot make it loadable, so the batch
is quarantined with the reason instead.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from clickstream_common.arrow import ARROW_TYPES
from clickstream_common.schema import LogicalType
from clickstream_common.tables import TableSpec


class PoisonBatch(Exception):  # a condition of the batch, not a failure of ours
    """The batch cannot be loaded as it is (unreadable or wrong-schema object, bad marker)."""

    def __init__(self, reason: str, object_key: str | None = None) -> None:
        super().__init__(reason if object_key is None else f"{object_key}: {reason}")
        self.reason = str(self)
        self.object_key = object_key


def _is_text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_text(t.value_type)
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _is_long(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_signed_integer(t) or (pa.types.is_unsigned_integer(t) and t.bit_width <= 32)
    )


_ACCEPTS: dict[LogicalType, Callable[[pa.DataType], bool]] = {
    LogicalType.STRING: _is_text,
    LogicalType.JSON: _is_text,
    LogicalType.LONG: _is_long,
    LogicalType.DOUBLE: lambda t: bool(pa.types.is_floating(t) or _is_long(t)),
    LogicalType.BOOLEAN: lambda t: bool(pa.types.is_boolean(t)),
    # A timestamp without a zone is UTC (the processor writes UTC).
    LogicalType.TIMESTAMP: lambda t: bool(pa.types.is_timestamp(t)),
}


def check_schema(schema: pa.Schema, spec: TableSpec, *, exact: bool = False) -> None:
    """Every column of the table, with a compatible type; `exact`: nothing else, same order.

    Redshift's COPY matches Parquet columns by position, so its path needs `exact`; the
    PostgreSQL path selects columns by name, ignores extra ones and reads a nullable column
    an object predates (a column added to the spec after it was written) as NULL.
    """
    names = schema.names
    if exact and tuple(names) != spec.column_names:
        raise PoisonBatch(
            f"columns {names} differ from the {spec.name} table's {list(spec.column_names)}"
        )
    for column in spec.columns:
        if column.name not in names:
            if column.nullable and not exact:
                continue
            raise PoisonBatch(f"missing column {column.name!r}")
        found = schema.field(column.name).type
        if not _ACCEPTS[column.type](found):
            raise PoisonBatch(f"column {column.name!r} has type {found}, expected {column.type}")


def conform(table: pa.Table, spec: TableSpec, expected_rows: int | None = None) -> pa.Table:
    """The table's columns in order with canonical types; poison if that is impossible."""
    check_schema(table.schema, spec)
    if expected_rows is not None and table.num_rows != expected_rows:
        raise PoisonBatch(f"{table.num_rows} rows, the commit marker says {expected_rows}")
    arrays = []
    for column in spec.columns:
        target = ARROW_TYPES[column.type]
        if column.name not in table.column_names:  # predates the column (check_schema)
            arrays.append(pa.nulls(table.num_rows, target))
            continue
        data = table[column.name]
        if data.type != target:
            try:
                # safe=False only lets timestamps drop sub-microsecond digits.
                data = data.cast(target, safe=column.type is not LogicalType.TIMESTAMP)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise PoisonBatch(f"column {column.name!r}: {exc}") from exc
        if not column.nullable and data.null_count:
            raise PoisonBatch(f"column {column.name!r} has {data.null_count} nulls")
        arrays.append(data)
    return pa.Table.from_arrays(arrays, names=list(spec.column_names))


def open_parquet(body: bytes) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(pa.BufferReader(body))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise PoisonBatch(f"unreadable Parquet: {exc}") from exc


def conformed_batches(
    parquet: pq.ParquetFile,
    spec: TableSpec,
    expected_rows: int | None = None,
    batch_rows: int = 50_000,
) -> Iterator[pa.Table]:
    """The object's rows in conformed slices, decoded as they are consumed.

    Streaming lets COPY start after the first slice instead of the whole object (and
    `iter_batches` decodes several times faster here than `read_table`).
    """
    check_schema(parquet.schema_arrow, spec)
    rows = parquet.metadata.num_rows
    if expected_rows is not None and rows != expected_rows:
        raise PoisonBatch(f"{rows} rows, the commit marker says {expected_rows}")
    present = set(parquet.schema_arrow.names)
    columns = [c for c in spec.column_names if c in present]
    batches = parquet.iter_batches(batch_size=batch_rows, columns=columns)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise PoisonBatch(f"unreadable Parquet: {exc}") from exc
        yield conform(pa.Table.from_batches([batch]), spec)


def check_footer(
    metadata: pq.FileMetaData, spec: TableSpec, expected_rows: int | None = None
) -> None:
    """Redshift path: what the footer tells without reading the data (schema, rows, nulls)."""
    check_schema(metadata.schema.to_arrow_schema(), spec, exact=True)
    if expected_rows is not None and metadata.num_rows != expected_rows:
        raise PoisonBatch(f"{metadata.num_rows} rows, the commit marker says {expected_rows}")
    required = {i for i, c in enumerate(spec.columns) if not c.nullable}
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for i in required:
            stats = group.column(i).statistics
            if stats is not None and stats.has_null_count and stats.null_count:
                raise PoisonBatch(f"column {spec.columns[i].name!r} has nulls")


def footer_metadata(tail: bytes) -> pq.FileMetaData:
    """Parse a Parquet footer from the file's last bytes (footer, length, magic)."""
    if len(tail) < 8 or tail[-4:] != b"PAR1":
        raise PoisonBatch("not a Parquet file (no PAR1 footer)")
    try:
        return pq.read_metadata(pa.BufferReader(b"PAR1" + tail))
    except (pa.ArrowException, OSError) as exc:
        raise PoisonBatch(f"unreadable Parquet footer: {exc}") from exc


CSV_OPTIONS = pa_csv.WriteOptions(include_header=False, batch_size=8192)


def utc_wall_time(table: pa.Table) -> pa.Table:
    """Timestamps as UTC wall-clock time without a zone.

    Arrow renders zoned timestamps ~40x slower than plain ones (a zone lookup per value);
    the load transaction sets TIME ZONE 'UTC', so PostgreSQL reads them back exactly.
    """
    arrays = [
        column.cast(pa.timestamp(column.type.unit))
        if pa.types.is_timestamp(column.type) and column.type.tz is not None
        else column
        for column in table.columns
    ]
    return pa.Table.from_arrays(arrays, names=table.column_names)


def csv_chunks(table: pa.Table, chunk_rows: int = 50_000) -> Iterator[bytes]:
    """Rows as PostgreSQL CSV: NULL unquoted-empty, strings quoted, timestamps in UTC.

    The COPY must run with TIME ZONE 'UTC' (see `utc_wall_time`).
    """
    for batch in utc_wall_time(table).to_batches(max_chunksize=chunk_rows):
        buffer = io.BytesIO()
        pa_csv.write_csv(batch, buffer, CSV_OPTIONS)
        yield buffer.getvalue()
