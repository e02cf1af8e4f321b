"""Attaching a member that already has an OMOP CDM: a CSV export, or a PostgreSQL schema.

:func:`ingest_omop_csv` loads a folder of CDM v5.4 CSV files as OHDSI tools write them:
``PERSON.csv`` or ``person.csv``, comma- or tab-separated (told apart by the header line),
with or without the ``*_datetime`` columns. Ids are kept as given (they are CDM ids
already) and each row's source key is ``omop:<table>:<primary key>``, so loading the same
folder twice adds nothing and a later export adds only its new rows.

Choices a reader should know:

* Vocabulary files (CONCEPT.csv, ...) are loaded only if the target has no vocabulary at
  all; otherwise they are skipped and the report says so. Replacing a vocabulary under
  existing rows is a vocabulary upgrade, not an ingestion.
* A file whose header has a column the CDM table does not, or lacks a required column, is
  rejected whole (``locator`` ``"line 1"``): guessing which columns to trust would be
  worse. A file that is not a CDM table is rejected with ``locator`` ``"file"``.
* Rows that fail to parse (a bad date, a non-integer id, a missing required value, a
  repeated primary key, the wrong number of fields) are rejected one by one with their
  physical line number, and the load goes on.
* Empty fields, and unquoted ``NA`` or ``NULL``, are nulls (R and SQL exports write them);
  tab-separated files are read without quoting, as Athena writes them.
* A file that is not UTF-8, or cannot be read, stops the load: nothing is kept.
"""

from __future__ import annotations

import csv
import graphlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from numpy.typing import NDArray

from accord.cdm import load_spec, skipped_foreign_keys
from accord.cdm.spec import Field, Table
from accord.errors import DataError
from accord.ingest.report import LoadReport
from accord.ingest.target import CdmTarget, Load, redact_dsn

Progress = Callable[[str, int, int], None]

OMOP_MAPPING_VERSION: Final = "omop-as-given"
"""Concept ids in an OMOP export were mapped by its source; Accord keeps them as they are."""
TABLE_FILE_SUFFIXES: Final = (".csv", ".tsv", ".txt")
_BLOCK_BYTES: Final = 8 << 20
_NULLS: Final = ["", "NA", "NULL"]


@dataclass(frozen=True)
class _Parser:
    """How one CDM base type is read from text: rewrite, check the shape, then cast."""

    expected: str
    arrow_type: pa.DataType
    shape: str
    rewrites: tuple[tuple[str, str], ...] = ()
    exact: Callable[[str], object] | None = None
    """Python's check, for the rare value Arrow's cast refuses though its shape is right."""


_ISO_DATE: Final = r"\d{4}-\d{2}-\d{2}"
_COMPACT_DATE: Final = (r"^(\d{4})(\d{2})(\d{2})$", r"\1-\2-\3")
_PARSERS: Final[dict[str, _Parser]] = {
    "integer": _Parser("a 32-bit integer", pa.int64(), r"^[+-]?\d{1,18}$", ((r"\.0*$", ""),)),
    "bigint": _Parser("an integer", pa.int64(), r"^[+-]?\d{1,18}$", ((r"\.0*$", ""),)),
    "float": _Parser("a number", pa.float64(), r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"),
    "date": _Parser(
        "a date (YYYY-MM-DD or YYYYMMDD)",
        pa.date32(),
        f"^{_ISO_DATE}$",
        (_COMPACT_DATE, (rf"^({_ISO_DATE})[ T]\d{{2}}:\d{{2}}(:\d{{2}}(\.\d+)?)?$", r"\1")),
        date.fromisoformat,
    ),
    "datetime": _Parser(
        "a date-time (YYYY-MM-DD HH:MM:SS)",
        pa.timestamp("us"),
        rf"^{_ISO_DATE}([ T]\d{{2}}:\d{{2}}(:\d{{2}}(\.\d{{1,6}})?)?)?$",
        (_COMPACT_DATE, (r"(\.\d{6})\d+$", r"\1")),
        datetime.fromisoformat,
    ),
}
_INT32: Final = (-(2**31), 2**31 - 1)


def load_order() -> tuple[str, ...]:
    """CDM tables with referenced tables first, so a schema that declares foreign keys
    accepts the load; the references DDL leaves out are left out here too."""
    skipped = {(s.table, s.field) for s in skipped_foreign_keys()}
    graph = {
        table.name: {k.table for f, k in table.references() if (table.name, f.name) not in skipped}
        for table in load_spec().tables.values()
    }
    return tuple(graphlib.TopologicalSorter(graph).static_order())


def ingest_omop_csv(
    directory: Path, target: CdmTarget, report: LoadReport, *, progress: Progress | None = None
) -> None:
    """Load a folder of OMOP CDM v5.4 CSV files into ``target`` as one load.

    ``progress(file name, bytes read, file size)`` is called as each file is read.
    Rejected rows and files are recorded in ``report``; fatal problems raise
    :class:`DataError` and leave the target as it was.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory} is not a folder", hint="give the folder holding PERSON.csv")
    files = _table_files(directory, report)
    report.mapping_version = OMOP_MAPPING_VERSION
    spec = load_spec()
    vocabulary = [t for t in files if spec.table(t).category == "vocabulary"]
    with target.load(report) as load:
        if vocabulary and any(target.has_rows(t.name) for t in spec.tables_in("vocabulary")):
            report.note(
                "vocabulary files skipped: the target already has a vocabulary "
                f"({target.vocabulary_version() or 'release unknown'})"
            )
            files = {t: p for t, p in files.items() if t not in vocabulary}
        for table in load_order():
            if table in files:
                _load_file(files[table], spec.table(table), load, report, progress)
        report.vocabulary_version = target.vocabulary_version()


def _table_files(directory: Path, report: LoadReport) -> dict[str, Path]:
    tables = load_spec().tables
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        table = path.stem.lower()
        if not path.is_file() or path.suffix.lower() not in TABLE_FILE_SUFFIXES:
            report.reject(path.name, "file", "not a CSV file; not loaded")
        elif table not in tables:
            report.reject(path.name, "file", "not an OMOP CDM v5.4 table Accord loads")
        elif table in found:
            raise DataError(
                f"{directory} has two files for table {table}: {found[table].name} and {path.name}",
                hint="keep one file per table",
            )
        else:
            found[table] = path
    return found


class _Lines:
    """Physical line numbers of the records a CSV reader yields.

    Arrow numbers records (the header is 1) and skips malformed ones, telling the invalid
    row handler their numbers; a quoted value may span several lines. Both are undone here
    so a reject points at the line a person sees in an editor.
    """

    def __init__(self) -> None:
        self.invalid: list[tuple[int, int, str]] = []
        self.next_record = 2
        self._breaks: list[tuple[int, int]] = []

    def on_invalid(self, row: Any) -> str:
        self.invalid.append((row.number or 0, row.actual_columns, row.text))
        if "\n" in row.text:
            self._breaks.append((row.number or 0, row.text.count("\n")))
        return "skip"

    def take(self, batch: pa.RecordBatch) -> NDArray[np.int64]:
        """The physical line of each record in ``batch``, the next batch read."""
        skipped = np.array([n for n, _, _ in self.invalid if n >= self.next_record], np.int64)
        pool = np.arange(self.next_record, self.next_record + batch.num_rows + len(skipped))
        records = pool[~np.isin(pool, skipped)][: batch.num_rows]
        if batch.num_rows:
            self.next_record = int(records[-1]) + 1
        breaks = np.zeros(batch.num_rows, np.int64)
        for column in batch.columns:
            breaks += pc.fill_null(pc.count_substring(column, "\n"), 0).to_numpy()
        spans = breaks > 0
        self._breaks.extend(zip(records[spans].tolist(), breaks[spans].tolist(), strict=True))
        return self.line_of(records)

    def line_of(self, records: NDArray[np.int64]) -> NDArray[np.int64]:
        if not self._breaks:
            return records
        starts, counts = np.array(sorted(self._breaks), np.int64).T
        before = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        shifted: NDArray[np.int64] = records + before[np.searchsorted(starts, records)]
        return shifted


def _load_file(
    path: Path, table: Table, load: Load, report: LoadReport, progress: Progress | None
) -> None:
    header, delimiter = _read_header(path)
    if header is None:
        report.note(f"{path.name} is empty; nothing loaded into {table.name}")
        return
    columns = [name.strip().lower() for name in header]
    problem = _header_problem(table, columns)
    if problem:
        report.reject(path.name, "line 1", problem)
        return
    lines = _Lines()
    size = path.stat().st_size
    for batch, done in _read_batches(path, header, delimiter, lines):
        renamed = pa.RecordBatch.from_arrays(batch.columns, names=columns)
        _load_batch(path.name, table, renamed, lines.take(batch), load, report)
        if progress is not None:
            progress(path.name, done, size)
    for number, found, text in lines.invalid:
        line = int(lines.line_of(np.array([number]))[0])
        reason = f"has {found} fields where the header has {len(columns)}"
        report.reject(path.name, f"line {line}", reason, value=text)
    if progress is not None:
        progress(path.name, size, size)


def _read_batches(
    path: Path, header: list[str], delimiter: str, lines: _Lines
) -> Iterator[tuple[pa.RecordBatch, int]]:
    """The file's records in batches, every column as text, with the bytes read so far."""
    tab = delimiter == "\t"
    try:
        with pa.OSFile(str(path), "r") as source:
            reader = pacsv.open_csv(
                source,
                read_options=pacsv.ReadOptions(use_threads=False, block_size=_BLOCK_BYTES),
                parse_options=pacsv.ParseOptions(
                    delimiter=delimiter,
                    quote_char=False if tab else '"',
                    newlines_in_values=not tab,
                    ignore_empty_lines=False,
                    invalid_row_handler=lines.on_invalid,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in header},
                    null_values=_NULLS,
                    strings_can_be_null=True,
                ),
            )
            for batch in reader:
                yield batch, source.tell()
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(
            f"cannot read {path}: {_first_line(error)}",
            hint="the file must be UTF-8 text; nothing from this load was kept",
        ) from error


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _read_header(path: Path) -> tuple[list[str] | None, str]:
    try:
        with path.open("rb") as raw:
            first = raw.readline(1 << 20)
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        text = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise DataError(
            f"cannot read {path}: line 1 is not UTF-8 text ({error.reason})",
            hint="re-export the file as UTF-8; nothing from this load was kept",
        ) from error
    if not text.strip():
        return None, ","
    if "\t" in text:
        return next(csv.reader([text], delimiter="\t", quoting=csv.QUOTE_NONE)), "\t"
    return next(csv.reader([text], delimiter=",")), ","


def _header_problem(table: Table, columns: list[str]) -> str | None:
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    unknown = [c for c in columns if c not in table.field_names]
    missing = [f.name for f in table.fields if f.required and f.name not in columns]
    if repeated:
        return f"header repeats columns {', '.join(repeated)}; file not loaded"
    if unknown:
        return (
            f"columns {', '.join(unknown)} are not in OMOP CDM v5.4 table {table.name}; "
            "file not loaded"
        )
    if missing:
        return f"required columns {', '.join(missing)} are missing; file not loaded"
    return None


def _load_batch(
    source: str,
    table: Table,
    batch: pa.RecordBatch,
    lines: NDArray[np.int64],
    load: Load,
    report: LoadReport,
) -> None:
    ok = np.ones(batch.num_rows, dtype=np.bool_)
    reasons = np.full(batch.num_rows, "", dtype=object)
    values = np.full(batch.num_rows, None, dtype=object)

    def flag(mask: NDArray[np.bool_], reason: str, raw: pa.Array | None = None) -> None:
        new = mask & ok
        ok[new] = False
        reasons[new] = reason
        if raw is not None:
            values[new] = raw.to_numpy(zero_copy_only=False)[new]

    empty = np.ones(batch.num_rows, dtype=np.bool_)
    for raw in batch.columns:
        empty &= raw.is_null().to_numpy(zero_copy_only=False)
    flag(empty, "empty row")
    typed: dict[str, pa.Array] = {}
    text = dict(zip(batch.schema.names, batch.columns, strict=True))
    for name, raw in text.items():
        spec_field = table.field(name)
        typed[name], bad = _parse_column(spec_field, raw)
        flag(bad, _problem(spec_field), raw)
        if spec_field.required:
            flag(typed[name].is_null().to_numpy(zero_copy_only=False), f"{name} is required")
    key = table.primary_key[0] if len(table.primary_key) == 1 else None
    if key is not None:
        flag(_repeats(typed[key], ok), f"{key} repeats an earlier line", text[key])
    rows = pa.table(typed).filter(pa.array(ok))
    if table.category == "vocabulary":
        load.append_vocabulary(table.name, rows)
    elif key is not None and rows.num_rows:
        prefix = pa.scalar(f"omop:{table.name}:")
        keys = pc.binary_join_element_wise(prefix, rows.column(key).cast(pa.string()), "")
        # Across batches of one file a repeated id is caught by this load's provenance.
        again = load.keys_loaded_here(table.name, keys).to_numpy(zero_copy_only=False)
        if again.any():
            flag(_scatter(ok, again), f"{key} repeats an earlier line", text[key])
            rows, keys = rows.filter(pa.array(~again)), keys.filter(pa.array(~again))
        locators = pc.binary_join_element_wise("line ", pa.array(lines[ok]).cast(pa.string()), "")
        load.append(
            table.name,
            rows,
            source_keys=keys,
            source_file=source,
            locators=locators,
            mapping_version=OMOP_MAPPING_VERSION,
        )
    for index in np.flatnonzero(~ok):
        value = values[index]
        report.reject(
            source,
            f"line {lines[index]}",
            str(reasons[index]),
            value=None if value is None else str(value),
        )


def _problem(spec_field: Field) -> str:
    if spec_field.base_type == "varchar":
        return f"{spec_field.name} is longer than {spec_field.max_length} characters"
    return f"{spec_field.name} is not {_PARSERS[spec_field.base_type].expected}"


def _parse_column(spec_field: Field, raw: pa.Array) -> tuple[pa.Array, NDArray[np.bool_]]:
    """The column in its CDM type, unparseable values null, and a mask of those values."""
    if spec_field.base_type == "varchar":
        limit = spec_field.max_length
        if limit is None:
            return raw, np.zeros(len(raw), dtype=np.bool_)
        too_long = pc.fill_null(pc.greater(pc.utf8_length(raw), limit), False)
        return pc.if_else(too_long, None, raw), too_long.to_numpy(zero_copy_only=False)
    parser = _PARSERS[spec_field.base_type]
    text = pc.utf8_trim_whitespace(raw)
    text = pc.if_else(pc.equal(text, ""), None, text)
    for pattern, replacement in parser.rewrites:
        text = pc.replace_substring_regex(text, pattern, replacement)
    shaped = pc.fill_null(pc.match_substring_regex(text, parser.shape), False)
    bad = text.is_valid().to_numpy(zero_copy_only=False) & ~shaped.to_numpy(zero_copy_only=False)
    candidate = pc.if_else(shaped, text, None)
    try:
        parsed = pc.cast(candidate, parser.arrow_type)
    except pa.ArrowInvalid:
        # Arrow refuses a whole column for one impossible value (2021-02-30); find it.
        assert parser.exact is not None
        refused = np.array(
            [v is not None and not _accepts(parser, v) for v in candidate.to_pylist()], np.bool_
        )
        bad |= refused
        parsed = pc.cast(pc.if_else(pa.array(refused), None, candidate), parser.arrow_type)
    if spec_field.base_type == "integer":
        low, high = _INT32
        outside = pc.fill_null(pc.or_(pc.less(parsed, low), pc.greater(parsed, high)), False)
        bad |= outside.to_numpy(zero_copy_only=False)
        parsed = pc.if_else(outside, None, parsed).cast(pa.int32())
    return parsed, bad


def _accepts(parser: _Parser, value: str) -> bool:
    assert parser.exact is not None
    try:
        parser.exact(value)
    except ValueError:
        return False
    return True


def _repeats(keys: pa.Array, eligible: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Rows whose key an earlier eligible row of the batch already has."""
    values = keys.to_numpy(zero_copy_only=False)
    index = np.flatnonzero(eligible)
    order = index[np.argsort(values[index], kind="stable")]
    repeated = np.zeros(len(values), dtype=np.bool_)
    repeated[order[1:]] = values[order[1:]] == values[order[:-1]]
    return repeated


def _scatter(where: NDArray[np.bool_], subset: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """A full-length mask from a mask over the rows ``where`` selects."""
    full = np.zeros(len(where), dtype=np.bool_)
    full[np.flatnonzero(where)[subset]] = True
    return full


@dataclass(frozen=True)
class AttachedCdm:
    """A PostgreSQL schema holding a CDM, described for the node's database config."""

    schema: str
    dsn: str = field(repr=False)
    engine: Literal["postgres"] = "postgres"
    cdm_version: str = "5.4"

    def database_config(self) -> dict[str, str]:
        """The node config's ``database`` section for this CDM."""
        return {"engine": self.engine, "dsn": self.dsn, "schema": self.schema}

    def __str__(self) -> str:
        return f"OMOP CDM {self.cdm_version} in schema {self.schema} at {redact_dsn(self.dsn)}"


def attach_postgres(dsn: str, schema: str) -> AttachedCdm:
    """Check that ``schema`` holds every CDM v5.4 table with its columns; copy nothing.

    Every missing table and column is named in one :class:`DataError`, so a member fixes
    its database in one pass. Extra tables and columns are allowed.
    """
    try:
        import psycopg
    except ImportError:
        raise DataError(
            "attaching PostgreSQL needs the psycopg package", hint="pip install 'accord[postgres]'"
        ) from None
    shown = redact_dsn(dsn)
    try:
        with psycopg.connect(dsn, autocommit=True) as connection:
            found = connection.execute(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name = %s",
                (schema,),
            ).fetchall()
            rows = connection.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = %s",
                (schema,),
            ).fetchall()
    except psycopg.Error as error:
        raise DataError(
            f"cannot read the schema {schema!r} at {shown}: {_first_line(error)}",
            hint="check the DSN and that the user may read information_schema",
        ) from None
    if not found:
        raise DataError(f"schema {schema!r} does not exist at {shown}", hint="check its name")
    present: dict[str, set[str]] = {}
    for table_name, column_name in rows:
        present.setdefault(str(table_name).lower(), set()).add(str(column_name).lower())
    problems = []
    spec = load_spec()
    missing_tables = [name for name in spec.tables if name not in present]
    if missing_tables:
        problems.append(f"missing tables {', '.join(missing_tables)}")
    for table in spec.tables.values():
        if table.name in present:
            absent = [f for f in table.field_names if f not in present[table.name]]
            if absent:
                problems.append(f"{table.name} lacks columns {', '.join(absent)}")
    if problems:
        raise DataError(
            f"schema {schema!r} at {shown} is not an OMOP CDM v5.4: {'; '.join(problems)}",
            hint="create the missing parts with the OHDSI CDM v5.4 DDL",
        )
    return AttachedCdm(schema=schema, dsn=dsn, cdm_version=spec.version)
