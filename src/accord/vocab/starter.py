"""The starter vocabulary: a small, real-id subset of the OMOP vocabulary tables.

It covers every concept the synthetic generator writes and the scenarios ask for, so a
demo or a test needs no Athena download. The files under ``starter/`` are in Athena's
layout (tab-separated, a header row, dates as YYYYMMDD, empty fields for nulls); where
they come from and under which terms is in ``starter/SOURCES.md``.

>>> import duckdb
>>> from accord.cdm import create_cdm
>>> con = duckdb.connect()
>>> create_cdm(con, "duckdb")
>>> load_starter_vocabulary(con) > 0
True
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from accord.cdm import arrow_schema
from accord.errors import DataError

STARTER_VOCABULARY_VERSION = "Accord starter subset 2025.1"
"""The ``vocabulary_version`` every row of the starter VOCABULARY table carries."""

VOCABULARY_FILES: dict[str, str] = {
    "concept": "CONCEPT.csv",
    "concept_relationship": "CONCEPT_RELATIONSHIP.csv",
    "concept_ancestor": "CONCEPT_ANCESTOR.csv",
    "vocabulary": "VOCABULARY.csv",
    "domain": "DOMAIN.csv",
}


def starter_directory() -> Path:
    """Where the starter CSV files live inside the installed package."""
    return Path(str(resources.files("accord.vocab") / "starter"))


def read_athena_table(path: Path, table: str) -> pa.Table:
    """Read one Athena-layout file into an Arrow table shaped like the CDM table.

    Columns come out in the CDM's order and types; dates written as YYYYMMDD become
    ``date32``; an empty field is a null.
    """
    schema = arrow_schema(table)
    try:
        raw = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types={field.name: pa.string() for field in schema},
                strings_can_be_null=True,
            ),
        )
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(
            f"cannot read vocabulary file {path}: {exc}",
            hint="check the file is a tab-separated Athena export",
        ) from exc
    missing = [name for name in schema.names if name not in raw.column_names]
    if missing:
        raise DataError(
            f"vocabulary file {path} lacks columns {', '.join(missing)}",
            hint=f"give a {table.upper()} file with the columns {', '.join(schema.names)}",
        )
    columns: list[Any] = []
    for field in schema:
        column = raw.column(field.name)
        if pa.types.is_date(field.type):
            column = pc.strptime(column, format="%Y%m%d", unit="s").cast(pa.date32())
        columns.append(column.cast(field.type))
    return pa.Table.from_arrays(columns, schema=schema)


@functools.cache
def _starter_tables() -> tuple[tuple[str, pa.Table], ...]:
    # Parsed once per process: every synthetic member database loads the same rows.
    directory = starter_directory()
    return tuple(
        (table, read_athena_table(directory / name, table))
        for table, name in VOCABULARY_FILES.items()
    )


def starter_tables() -> dict[str, pa.Table]:
    """The starter vocabulary as Arrow tables, keyed by CDM table name."""
    return dict(_starter_tables())


def load_starter_vocabulary(con: Any) -> int:
    """Bulk-load the starter vocabulary into ``con``'s vocabulary tables.

    ``con`` is a DuckDB connection whose CDM tables exist (``accord.cdm.create_cdm``)
    and hold no vocabulary rows yet. Returns the number of rows loaded.
    """
    loaded = 0
    for table, rows in _starter_tables():
        view = f"accord_starter_{table}"
        con.register(view, rows)
        try:
            con.execute(f"INSERT INTO {table} SELECT * FROM {view}")
        finally:
            con.unregister(view)
        loaded += rows.num_rows
    return loaded
