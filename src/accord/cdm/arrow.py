"""Arrow schemas for CDM tables, for bulk loading columnar data such as synthetic cohorts.

The types match the DDL in :mod:`accord.cdm.ddl`, so an Arrow table with this schema
inserts into a created CDM table without casts.

>>> arrow_schema("death").field("death_date").type
DataType(date32[day])
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

from accord.cdm.spec import BaseType, Field, load_spec

_ARROW_TYPES: Final[dict[BaseType, pa.DataType]] = {
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "float": pa.float64(),
    "date": pa.date32(),
    # Microseconds, the resolution of both DuckDB's and PostgreSQL's TIMESTAMP.
    "datetime": pa.timestamp("us"),
    "varchar": pa.string(),
}


def arrow_field(field: Field) -> pa.Field:
    """The Arrow field for one CDM field; required fields are not nullable."""
    return pa.field(field.name, _ARROW_TYPES[field.base_type], nullable=not field.required)


def arrow_schema(table_name: str) -> pa.Schema:
    """The Arrow schema of a CDM table, fields in specification order.

    Raises :class:`accord.cdm.spec.UnknownTableError` (a ``DataError``) for an unknown table.
    """
    table = load_spec().table(table_name)
    return pa.schema([arrow_field(f) for f in table.fields])
