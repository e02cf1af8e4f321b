"""A member's CDM written out as OHDSI tools export it: :func:`export_omop_csv`.

One file per CDM table (``PERSON.csv``), a header row of the table's columns in
specification order, dates as YYYY-MM-DD, written by DuckDB's ``COPY`` straight from the
member database. This is how a member that already runs an OMOP CDM arrives in the
consortium, so :func:`accord.ingest.ingest_omop_csv` can be checked against the
generator's own tables.

What the format cannot tell apart: a null and an empty string are both an empty field,
and the ingest reads the unquoted text ``NA`` and ``NULL`` as nulls too. Tab-separated
files carry no quoting (Athena's layout), so a text value holding a tab or a line break
cannot be written and is refused before anything is written.

The helpers :func:`open_member` and :func:`staged_files` are shared with
:mod:`accord.synth.export_fhir`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import duckdb

from accord.cdm import VOCABULARY_TABLES, load_spec
from accord.cdm.spec import Table
from accord.errors import DataError, UserError

_FORBIDDEN_DELIMITERS: Final = frozenset({'"', "\n", "\r", ""})


def export_omop_csv(
    member_db: Path,
    out_dir: Path,
    *,
    upper_case: bool = True,
    delimiter: str = "\t",
    include_vocabulary: bool = True,
) -> dict[str, int]:
    """Write every CDM table of ``member_db`` to ``out_dir``; returns rows per table.

    File names are the table names, upper case unless ``upper_case`` is false.
    ``delimiter`` is one character; a tab writes Athena's unquoted layout, anything else
    quotes values that need it. ``include_vocabulary`` adds CONCEPT.csv and the other
    vocabulary tables. Tables are written in primary-key order, so the same database
    gives the same files. Files appear in ``out_dir`` only once all are written.

    >>> import tempfile
    >>> from accord.synth import generate_consortium
    >>> root = Path(tempfile.mkdtemp())
    >>> manifest = generate_consortium(root / "c", members=1, persons_per_member=20)
    >>> rows = export_omop_csv(root / "c" / manifest.members[0].db_file, root / "csv")
    >>> rows["person"], (root / "csv" / "PERSON.csv").exists()
    (20, True)
    """
    if len(delimiter) != 1 or delimiter in _FORBIDDEN_DELIMITERS:
        raise UserError(
            f"delimiter must be one character other than a quote or line break, got {delimiter!r}",
            hint='use "\\t" (Athena layout) or ","',
        )
    spec = load_spec()
    tables = [
        table
        for table in spec.tables.values()
        if include_vocabulary or table.name not in VOCABULARY_TABLES
    ]
    names = {table.name: _file_name(table.name, upper_case) for table in tables}
    owned = [_file_name(t, upper) for t in spec.tables for upper in (True, False)]
    rows: dict[str, int] = {}
    with open_member(member_db) as con:
        present = _columns(con)
        for table in tables:
            _check_columns(member_db, table, present)
            if delimiter == "\t":
                _check_unquoted(con, table)
        with staged_files(out_dir, owned) as staging:
            for table in tables:
                rows[table.name] = _copy(con, table, staging / names[table.name], delimiter)
    return rows


def _file_name(table: str, upper_case: bool) -> str:
    return f"{table.upper() if upper_case else table}.csv"


def _columns(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for table, column in con.execute(
        "SELECT lower(table_name), lower(column_name) FROM information_schema.columns "
        "WHERE table_schema = 'main'"
    ).fetchall():
        found.setdefault(table, set()).add(column)
    return found


def _check_columns(member_db: Path, table: Table, present: dict[str, set[str]]) -> None:
    if table.name not in present:
        raise DataError(
            f"{member_db} has no table {table.name}",
            hint="export a database holding every OMOP CDM v5.4 table, as generate_consortium "
            "writes",
        )
    missing = [name for name in table.field_names if name not in present[table.name]]
    if missing:
        raise DataError(
            f"{member_db}: table {table.name} lacks columns {', '.join(missing)}",
            hint="the database must follow the OMOP CDM v5.4 specification",
        )


def _check_unquoted(con: duckdb.DuckDBPyConnection, table: Table) -> None:
    """Refuse text a tab-separated file without quoting would split or break."""
    text = [f.name for f in table.fields if f.base_type == "varchar"]
    if not text:
        return
    checks = ", ".join(
        f"count(*) FILTER (WHERE regexp_matches({name}, '[\\t\\r\\n]'))" for name in text
    )
    counts = con.execute(f"SELECT {checks} FROM {table.name}").fetchone() or ()
    for name, count in zip(text, counts, strict=True):
        if count:
            raise DataError(
                f"{table.name}.{name} has {count} values holding a tab or line break, "
                "which a tab-separated file without quoting cannot carry",
                hint='export with delimiter=","',
            )


def _copy(con: duckdb.DuckDBPyConnection, table: Table, path: Path, delimiter: str) -> int:
    order = ", ".join(table.primary_key or table.field_names)
    options = [
        "HEADER",
        f"DELIMITER {_literal(delimiter)}",
        "DATEFORMAT '%Y-%m-%d'",
    ]
    if delimiter == "\t":
        options.append("QUOTE ''")
    result = con.execute(
        f"COPY (SELECT {', '.join(table.field_names)} FROM {table.name} ORDER BY {order}) "
        f"TO {_literal(str(path))} ({', '.join(options)})"
    ).fetchone()
    return int(result[0]) if result else 0


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@contextmanager
def open_member(member_db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to a member database, with a clear error if it is not one."""
    path = Path(member_db)
    if not path.is_file():
        raise DataError(
            f"member database {path} does not exist",
            hint="give the .duckdb file generate_consortium wrote",
        )
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as error:
        raise DataError(
            f"cannot open {path} as a DuckDB database: {_first_line(error)}",
            hint="give the .duckdb file generate_consortium wrote, not open in another writer",
        ) from error
    try:
        yield con
    finally:
        con.close()


@contextmanager
def staged_files(out_dir: Path, owned: Iterable[str]) -> Iterator[Path]:
    """A hidden directory to write into; its files replace ``out_dir``'s when the block ends.

    Files in ``out_dir`` named in ``owned`` but not written this time are removed, so a
    folder exported again never mixes two exports (an ingest reads every file in it). If
    the block raises, ``out_dir`` is left as it was.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    except OSError as error:
        raise DataError(
            f"cannot write to {out_dir}: {error.strerror or error}",
            hint="choose a directory you can write to",
        ) from error
    try:
        yield staging
        written = {path.name for path in staging.iterdir()}
        for name in set(owned) - written:
            (out_dir / name).unlink(missing_ok=True)
        for name in sorted(written):
            os.replace(staging / name, out_dir / name)
    except OSError as error:
        raise DataError(
            f"cannot write to {out_dir}: {error.strerror or error}",
            hint="check the disk has room and the directory is writable",
        ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _first_line(error: Any) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
