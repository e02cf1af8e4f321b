"""Rows as the CDM wants them: every column of the table, each cast to the spec's type.

Ingestion paths hand :class:`~accord.ingest.target.Load` Arrow tables holding whichever
columns their source has; this module fills the rest with nulls, casts the others, and
checks the source keys and locators that travel with the rows, so every fault is named
(table, column, count) before anything reaches the database.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from accord.cdm import arrow_schema
from accord.cdm.spec import Table
from accord.errors import DataError
from accord.ingest.engines import first_line

INTEGER_LIMITS: Final = {"integer": 2**31 - 1, "bigint": 2**63 - 1}
"""The largest id each integer type of the spec can hold."""


def integer_key(table: Table) -> str | None:
    """The single integer primary key column, which provenance records as ``row_id``."""
    if len(table.primary_key) != 1:
        return None
    key = table.primary_key[0]
    return key if table.field(key).base_type in INTEGER_LIMITS else None


def shape_rows(table: Table, rows: pa.Table) -> pa.Table:
    """``rows`` as the CDM table's full Arrow schema: columns cast, absent ones null."""
    schema = arrow_schema(table.name)
    names = rows.column_names
    repeated = sorted({n for n in names if names.count(n) > 1})
    unknown = [n for n in names if n not in schema.names]
    if repeated or unknown:
        raise DataError(
            f"rows for {table.name} have "
            + (f"repeated columns {', '.join(repeated)}" if repeated else "")
            + (" and " if repeated and unknown else "")
            + (f"columns not in the CDM: {', '.join(unknown)}" if unknown else ""),
            hint=f"{table.name} columns are: {', '.join(schema.names)}",
        )
    missing = [f.name for f in table.fields if f.required and f.name not in names]
    if missing:
        raise DataError(
            f"rows for {table.name} lack required columns {', '.join(missing)}",
            hint="the OMOP CDM requires a value for these in every row",
        )
    arrays = []
    for field in schema:
        if field.name not in names:
            arrays.append(pa.nulls(rows.num_rows, field.type))
            continue
        column = rows.column(field.name)
        try:
            column = column.cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise DataError(
                f"{table.name}.{field.name}: cannot convert {column.type} to {field.type}: "
                f"{first_line(error)}"
            ) from error
        if not field.nullable and column.null_count:
            raise DataError(
                f"{table.name}.{field.name} is required but {column.null_count:,} of "
                f"{rows.num_rows:,} rows have no value",
                hint="reject those rows before appending",
            )
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema)


def row_strings(values: pa.Array | pa.ChunkedArray, what: str, expected: int) -> pa.Array:
    """Source keys or locators as one string array, one non-null entry per row."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(values, type=pa.string())
    if len(values) != expected:
        raise ValueError(f"{what} has {len(values)} entries for {expected} rows")
    if values.null_count:
        raise ValueError(f"{what} has {values.null_count} null entries")
    return values.cast(pa.string())


def check_unique(keys: pa.Array, table: str) -> None:
    """Refuse a batch that repeats a source key: provenance holds one row per key."""
    if pc.count_distinct(keys).as_py() == len(keys):
        return
    counts = pc.value_counts(keys)
    repeated = [v["values"] for v in counts.to_pylist() if v["counts"] > 1][:3]
    raise DataError(
        f"rows for {table} repeat source keys {', '.join(map(repr, repeated))}",
        hint="each row needs its own source key; drop duplicates before appending",
    )
