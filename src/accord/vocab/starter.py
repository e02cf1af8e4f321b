"""The starter vocabulary: a small, real-id subset of the OMOP vocabulary tables.

It covers every concept the synthetic generator writes and the scenarios ask for, so a
demo or a test needs no Athena download. The files under ``starter/`` are in Athena's
layout (tab-separated, a header row, dates as YYYYMMDD, empty fields for nulls); where
they come from and under which terms is in ``starter/SOURCES.md``.

The reader for Athena-layout files lives here too, and
:func:`accord.vocab.athena.import_vocabulary` reads full Athena downloads with it.

>>> import duckdb
>>> from accord.cdm import create_cdm
>>> con = duckdb.connect()
>>> create_cdm(con, "duckdb")
>>> load_starter_vocabulary(con) > 0
True
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from accord.cdm import arrow_schema, load_spec
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


BLOCK_SIZE: Final = 16 << 20  # bytes of CSV per batch: bounded memory for multi-GB files

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_SHOWN: Final = 60  # characters of a bad value quoted in an error


@dataclass(frozen=True)
class TableLayout:
    """What one vocabulary file must hold: the table's Arrow schema and checks."""

    name: str
    schema: pa.Schema
    max_lengths: Mapping[str, int]
    primary_key: tuple[str, ...]


# CONCEPT_SYNONYM ships with every Athena download but is not in the CDM specification
# this package carries, so its shape (from OMOP CDM v5.4) is written here.
CONCEPT_SYNONYM: Final = TableLayout(
    "concept_synonym",
    pa.schema(
        [
            pa.field("concept_id", pa.int32(), nullable=False),
            pa.field("concept_synonym_name", pa.string(), nullable=False),
            pa.field("language_concept_id", pa.int32(), nullable=False),
        ]
    ),
    MappingProxyType({"concept_synonym_name": 1000}),
    (),
)


def table_layout(table: str) -> TableLayout:
    """The layout of a vocabulary table: from the CDM specification, or CONCEPT_SYNONYM."""
    if table == CONCEPT_SYNONYM.name and table not in load_spec().tables:
        return CONCEPT_SYNONYM
    spec = load_spec().table(table)
    lengths = {f.name: f.max_length for f in spec.fields if f.max_length is not None}
    return TableLayout(table, arrow_schema(table), MappingProxyType(lengths), spec.primary_key)


def read_athena_table(path: Path, table: str) -> pa.Table:
    """Read one Athena-layout file into an Arrow table shaped like the CDM table.

    Columns come out in the CDM's order and types; dates written as YYYYMMDD (or
    YYYY-MM-DD) become ``date32``; an empty field is a null. The reading and its checks
    are those of :func:`read_athena_batches`.
    """
    layout = table_layout(table)
    batches = list(read_athena_batches(path, layout))
    return pa.concat_tables(batches) if batches else layout.schema.empty_table()


def read_athena_batches(
    path: Path, layout: TableLayout, *, block_size: int = BLOCK_SIZE
) -> Iterator[pa.Table]:
    """Stream one Athena file as Arrow tables in ``layout``'s schema, checking each row.

    The header line decides the delimiter (tab or comma); dates may be YYYYMMDD or
    YYYY-MM-DD; an empty field is a null. Problems raise ``DataError`` naming the file,
    the line and what was expected.
    """
    delimiter, names = _read_header(path)
    missing = [name for name in layout.schema.names if name not in names]
    if missing:
        raise DataError(
            f"{path}, line 1: vocabulary file lacks columns {', '.join(missing)}",
            hint=f"a {layout.name.upper()} file has the columns {', '.join(layout.schema.names)}",
        )
    bad_rows: list[Any] = []

    def on_invalid_row(row: Any) -> str:
        bad_rows.append(row)
        return "error"

    # Tab files are Athena's own, unquoted (concept names contain '"'); comma files come
    # from other tools that quote fields holding commas.
    parse = pacsv.ParseOptions(
        delimiter=delimiter,
        quote_char='"' if delimiter == "," else False,
        ignore_empty_lines=False,  # keeps row counts equal to line numbers
        invalid_row_handler=on_invalid_row,
    )
    read = pacsv.ReadOptions(
        column_names=names, skip_rows=1, block_size=block_size, use_threads=False
    )
    convert = pacsv.ConvertOptions(
        include_columns=layout.schema.names,
        column_types={name: pa.string() for name in layout.schema.names},
        strings_can_be_null=True,
    )
    line = 2
    try:
        reader = pacsv.open_csv(
            path, read_options=read, parse_options=parse, convert_options=convert
        )
        for batch in reader:
            yield _convert(batch, layout, path, line)
            line += batch.num_rows
    except pa.ArrowInvalid as exc:
        raise _parse_error(path, exc, bad_rows, len(names), delimiter) from exc
    except OSError as exc:
        raise DataError(f"cannot read vocabulary file {path}: {exc}") from exc


def _read_header(path: Path) -> tuple[str, list[str]]:
    try:
        with path.open("rb") as file:
            first = file.readline(1 << 20)
    except OSError as exc:
        raise DataError(
            f"cannot read vocabulary file {path}: {exc}",
            hint="check the file exists and is readable",
        ) from exc
    try:
        header = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}, line 1: not UTF-8 text", hint="save the file as UTF-8") from exc
    delimiter = "\t" if "\t" in header else "," if "," in header else ""
    if not delimiter:
        raise DataError(
            f"{path}, line 1: expected a tab- or comma-separated header, found {header[:_SHOWN]!r}",
            hint="vocabulary files start with a header line naming their columns",
        )
    return delimiter, [name.strip().strip('"').lower() for name in header.split(delimiter)]


def _parse_error(
    path: Path, exc: pa.ArrowInvalid, bad_rows: list[Any], fields: int, delimiter: str
) -> DataError:
    separated = "tab-separated" if delimiter == "\t" else "comma-separated"
    if bad_rows:
        row = bad_rows[0]
        where = f"line {row.number}" if row.number is not None else "a line"
        return DataError(
            f"{path}, {where}: expected {fields} {separated} fields, found {row.actual_columns}",
            hint="every line has as many fields as the header",
        )
    if "UTF8" in str(exc) or "UTF-8" in str(exc):
        line = _first_non_utf8_line(path)
        where = f"line {line}" if line else "somewhere"
        return DataError(f"{path}, {where}: not UTF-8 text", hint="save the file as UTF-8")
    return DataError(f"cannot parse vocabulary file {path}: {exc}")


def _first_non_utf8_line(path: Path) -> int | None:
    # Only on the error path: pyarrow reports bad UTF-8 without saying where.
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


@dataclass(frozen=True)
class _Problem:
    index: int  # row within the batch
    column: str
    problem: str
    expected: str


def _convert(batch: pa.RecordBatch, layout: TableLayout, path: Path, line: int) -> pa.Table:
    problems: list[_Problem | None] = []
    columns = []
    blank = pa.array([True] * batch.num_rows)
    for field in layout.schema:
        raw = batch.column(field.name)
        blank = pc.and_(blank, raw.is_null())
        if not field.nullable:
            problems.append(_first(raw.is_null(), field.name, "is empty", "a value"))
        if pa.types.is_integer(field.type):
            column, problem = _whole_numbers(raw, field.name)
        elif pa.types.is_date(field.type):
            column, problem = _dates(raw, field.name)
        else:
            column, problem = raw, None
            limit = layout.max_lengths.get(field.name)
            if limit is not None:
                too_long = pc.greater(pc.utf8_length(raw), limit)
                problem = _first(too_long, field.name, "is too long", f"at most {limit} characters")
        problems.append(problem)
        columns.append(column)
    problems.append(_first(blank, "", "", ""))
    found = [p for p in problems if p is not None]
    if found:
        # Report the earliest line, and a blank line as such rather than as empty fields.
        first = min(found, key=lambda p: (p.index, p.column != ""))
        where = f"{path}, line {line + first.index}"
        if not first.column:
            raise DataError(f"{where}: the line is blank", hint="remove blank lines")
        value = batch.column(first.column)[first.index].as_py()
        shown = f" ({value[:_SHOWN]!r})" if value else ""
        raise DataError(
            f"{where}: {first.column} {first.problem}{shown}",
            hint=f"expected {first.expected} in column {first.column}",
        )
    return pa.Table.from_arrays(
        [c.cast(f.type) for c, f in zip(columns, layout.schema, strict=True)], schema=layout.schema
    )


def _whole_numbers(raw: pa.Array, name: str) -> tuple[pa.Array, _Problem | None]:
    # At most ten digits, so the int64 cast cannot fail before the range check.
    digits = pc.match_substring_regex(raw, r"^-?[0-9]{1,10}$")
    problem = _first(pc.invert(digits), name, "is not a whole number", "digits")
    if problem is not None:
        return raw, problem
    wide = raw.cast(pa.int64())
    outside = pc.or_(pc.less(wide, _INT32_MIN), pc.greater(wide, _INT32_MAX))
    return wide, _first(outside, name, "is out of range", "a 32-bit integer")


def _dates(raw: pa.Array, name: str) -> tuple[pa.Array, _Problem | None]:
    compact = pc.strptime(raw, format="%Y%m%d", unit="s", error_is_null=True)
    dashed = pc.strptime(raw, format="%Y-%m-%d", unit="s", error_is_null=True)
    parsed = pc.coalesce(compact, dashed)
    # Arrow's strptime is lenient ("2099123" is read as 2099-12-03, 30 February rolls
    # over into March), so the text must have the exact shape and survive a round trip.
    shaped = pc.match_substring_regex(raw, r"^([0-9]{8}|[0-9]{4}-[0-9]{2}-[0-9]{2})$")
    same = pc.equal(pc.strftime(parsed, format="%Y%m%d"), pc.replace_substring(raw, "-", ""))
    failed = pc.and_(raw.is_valid(), pc.invert(pc.and_kleene(shaped, pc.fill_null(same, False))))
    problem = _first(failed, name, "is not a date", "a date as YYYYMMDD or YYYY-MM-DD")
    return parsed.cast(pa.date32()), problem


def _first(bad: pa.Array, column: str, problem: str, expected: str) -> _Problem | None:
    if not pc.any(bad).as_py():
        return None
    index = pc.index(pc.fill_null(bad, False), True).as_py()
    return _Problem(index, column, problem, expected)


def starter_directory() -> Path:
    """Where the starter CSV files live inside the installed package."""
    return Path(str(resources.files("accord.vocab") / "starter"))


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
