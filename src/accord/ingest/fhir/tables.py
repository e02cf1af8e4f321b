"""Columns shaped for a CDM table: the spec's types, and text cut to the spec's lengths."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from accord.cdm import arrow_field, load_spec


@functools.cache
def _fields(table: str) -> dict[str, tuple[pa.Field, int | None]]:
    return {
        field.name: (arrow_field(field), field.max_length)
        for field in load_spec().table(table).fields
    }


def cdm_rows(table: str, columns: Mapping[str, Any]) -> pa.Table:
    """An Arrow table of some of ``table``'s columns, cast to the CDM's types.

    Values may be Arrow arrays or Python lists. Text longer than the field allows is cut
    to fit: PostgreSQL refuses it otherwise, and a FHIR string has no length limit.
    Unknown column names raise :class:`accord.cdm.UnknownFieldError`.
    """
    fields = _fields(table)
    arrays: list[pa.Array] = []
    schema: list[pa.Field] = []
    for name, values in columns.items():
        if name not in fields:
            load_spec().table(table).field(name)  # raises, naming the valid fields
        field, max_length = fields[name]
        array = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if max_length is not None and pa.types.is_string(array.type):
            array = pc.utf8_slice_codeunits(array, 0, max_length)
        arrays.append(array.cast(field.type))
        schema.append(field.with_nullable(True))
    return pa.Table.from_arrays(arrays, schema=pa.schema(schema))


def constant(value: int | str | None, n: int, type_: pa.DataType) -> pa.Array:
    """``n`` copies of one value."""
    return pa.repeat(pa.scalar(value, type_), n) if value is not None else pa.nulls(n, type_)


def source_keys(resource_keys: Sequence[str] | pa.Array, k: int | pa.Array) -> pa.Array:
    """``fhir:{type}/{id}#{k}`` keys: ``k`` numbers the rows one resource produced."""
    keys = resource_keys if isinstance(resource_keys, pa.Array) else pa.array(resource_keys)
    suffix = pa.scalar(str(k)) if isinstance(k, int) else k.cast(pa.string())
    return pc.binary_join_element_wise(keys, suffix, "#")
