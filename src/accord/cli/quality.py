"""``accord quality``: the data quality gate on a member's CDM, for its data steward.

* ``run`` judges the CDM as it stands (a submission of kind ``check``), records the
  verdict and writes the JSON and HTML reports;
* ``report`` writes the reports of a recorded submission (by default the newest, such as
  the one a load just made);
* ``thresholds`` shows the member's threshold overrides and sets or clears them, each
  with its reason.

Each takes the member's database as ``--db`` (a ``.duckdb`` file or a PostgreSQL DSN,
with ``--schema``) or through its node's config as ``--node node.json``; a Spark member
is reached only through its node's config, which names its parquet tables and the DuckDB
file that keeps its verdicts (``report`` and ``thresholds`` read only that file). ``run`` exits 0
once the checks have run, whatever the decision: the decision is printed and written to
the report, for a person or a script to act on. A database that is not a CDM (tables
missing) is a :class:`accord.errors.DataError` (exit 20).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from accord.cdm import Dialect
    from accord.node.config import DatabaseConfig
    from accord.quality.run import Dialect as Engine

console = Console()

DECISION_STYLE: Final = {
    "quarantined": "bold red",
    "accepted_with_warnings": "bold yellow",
    "accepted": "bold green",
}

quality_app = typer.Typer(
    help="Check a member's CDM against the data quality gate.", no_args_is_help=True
)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="the CDM: a .duckdb file or a postgresql:// DSN"),
]
NodeOption = Annotated[
    Path | None,
    typer.Option("--node", help="or: the node config (node.json) whose database to use"),
]
SchemaOption = Annotated[
    str | None, typer.Option("--schema", help="the schema holding the CDM (default: the usual)")
]
ReportOption = Annotated[
    Path | None, typer.Option("--report", help="write the steward's report here, as JSON")
]
HtmlOption = Annotated[
    Path | None, typer.Option("--html", help="write the steward's report here, as HTML")
]


@quality_app.command("run")
def run(
    db: DbOption = None,
    node: NodeOption = None,
    schema: SchemaOption = None,
    report: ReportOption = None,
    html: HtmlOption = None,
    examples: Annotated[
        int, typer.Option("--examples", help="example record ids listed per failed check")
    ] = 5,
) -> None:
    """Judge the CDM as it stands: list failures in plain words, record the decision."""
    from accord.quality import gate

    with member_database(db, node, schema, cdm=True, write=True) as member:
        verdict = gate.submit(
            member.connection,
            member.dialect,
            kind="check",
            source="accord quality run",
            schema=member.schema,
            database=member.shown,
            examples=examples,
            books=member.books,
        )
    print_report(verdict.report)
    write_reports(verdict.report, report, html)


@quality_app.command("report")
def report_command(
    db: DbOption = None,
    node: NodeOption = None,
    schema: SchemaOption = None,
    report: ReportOption = None,
    html: HtmlOption = None,
    submission: Annotated[
        str | None, typer.Option("--submission", help="a submission id (default: the newest)")
    ] = None,
) -> None:
    """Show a recorded submission's verdict and write its reports."""
    from accord.errors import DataError
    from accord.quality.books import stored_report

    with member_database(db, node, schema, cdm=False, write=False) as member:
        shown = member.shown
        found = stored_report(*member.verdicts, submission)
    if found is None:
        wanted = f"submission {submission}" if submission else "any submission"
        raise DataError(
            f"{shown} has no record of {wanted}",
            hint="every `accord ingest` load is a submission; or run `accord quality run`",
        )
    print_report(found)
    write_reports(found, report, html)


@quality_app.command("thresholds")
def thresholds(
    db: DbOption = None,
    node: NodeOption = None,
    schema: SchemaOption = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="CHECK=PERCENT: tolerate this share of violating rows"),
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="why (required with --set)")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="YAML: check id: {threshold: PERCENT, reason: TEXT}"),
    ] = None,
    clear: Annotated[
        list[str] | None, typer.Option("--clear", help="back to the catalogue's threshold")
    ] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="list every check with its threshold")
    ] = False,
) -> None:
    """Show the member's threshold overrides; set or clear them, each with its reason."""
    from accord.errors import DataError
    from accord.quality import default_catalogue, gate
    from accord.quality.books import Override, overrides, set_overrides

    changes = gate.read_threshold_file(file) if file is not None else []
    for entry in set_ or []:
        check_id, equals, value = entry.partition("=")
        if not equals:
            raise DataError(f"--set {entry!r} is not CHECK=PERCENT", hint="e.g. --set CHECK=2.5")
        try:
            threshold = float(value)
        except ValueError:
            raise DataError(
                f"--set {entry!r}: threshold {value!r} is not a number",
                hint="a threshold is a percentage of rows, from 0 to 100",
            ) from None
        if not reason:
            raise DataError("--set needs --reason", hint="say why this member needs its own value")
        changes.append(Override(check_id.strip(), threshold, reason))
    writing = bool(changes or clear)
    with member_database(db, node, schema, cdm=False, write=writing) as member:
        shown = member.shown
        connection, dialect, schema_ = member.verdicts
        if writing:
            set_overrides(connection, dialect, changes, schema=schema_, clear=clear or [])
            console.print(f"{len(changes)} set, {len(clear or [])} cleared in {shown}")
        current = {o.check_id: o for o in overrides(connection, dialect, schema_)}
    table = Table(title=f"thresholds of {shown}", title_justify="left")
    for column in ("check", "catalogue %", "member %", "reason"):
        table.add_column(column, overflow="fold")
    for check in default_catalogue():
        override = current.get(check.id)
        if override is None and not show_all:
            continue
        table.add_row(
            check.id,
            f"{check.threshold:g}",
            f"{override.threshold:g}" if override else "",
            override.reason if override else "",
        )
    if table.row_count:
        console.print(table)
    else:
        console.print("no overrides: every check uses the catalogue's threshold")


@dataclass(frozen=True)
class GateDatabase:
    """A member's CDM opened for the gate, and where its verdicts are kept.

    ``connection`` reads the CDM (``None`` for a Spark member when only its verdicts are
    wanted); ``books`` is a Spark member's DuckDB verdicts file, ``None`` otherwise.
    """

    connection: Any
    dialect: Engine
    shown: str
    schema: str | None
    books: Any = None

    @property
    def verdicts(self) -> tuple[Any, Dialect, str | None]:
        """(connection, dialect, schema) of the database keeping the verdicts."""
        if self.dialect == "spark":
            return self.books, "duckdb", None
        return self.connection, self.dialect, self.schema


@contextmanager
def member_database(
    db: str | None, node: Path | None, schema: str | None, *, cdm: bool, write: bool
) -> Iterator[GateDatabase]:
    """The member's CDM opened for the gate. ``cdm`` says whether the checks will read
    it (a Spark member's session is started only then) and ``write`` whether verdicts or
    overrides will be written."""
    from accord.errors import DataError
    from accord.ingest.engines import open_engine

    if (db is None) == (node is None):
        raise DataError("name the database with --db, or its node with --node (one of them)")
    if node is not None:
        from accord.node.config import load_node_config

        database = load_node_config(node).database
        if database.engine == "spark":
            with spark_member(database, cdm=cdm, write=write) as member:
                yield member
            return
        db = database.path if database.engine == "duckdb" else database.dsn
        schema = database.schema_
    assert db is not None
    engine, shown = open_engine(db, schema, create=False)
    try:
        yield GateDatabase(engine.connection, engine.dialect, shown, schema)
    finally:
        engine.close()


@contextmanager
def spark_member(database: DatabaseConfig, *, cdm: bool, write: bool) -> Iterator[GateDatabase]:
    """A Spark member's verdicts file and, with ``cdm``, its CDM in a Spark session that
    is stopped afterwards. A verdicts file not yet written reads as empty."""
    import duckdb

    from accord.node import spark

    settings = database.spark
    shown = (
        f"{settings.tables} (spark)"
        if settings is not None and settings.tables is not None
        else f"spark database {database.schema_ or 'default'}"
    )
    with spark.gate_books(database, write=write) as found:
        books = duckdb.connect() if found is None else found
        try:
            if not cdm:
                yield GateDatabase(None, "spark", shown, database.schema_, books)
                return
            try:
                connection = spark.connect(database)
                yield GateDatabase(connection, "spark", shown, database.schema_, books)
            finally:
                spark.stop()
        finally:
            if found is None:
                books.close()


def print_report(document: Mapping[str, Any]) -> None:
    """A table of the checks that failed or could not run, then counts and the decision."""
    shown = [r for r in document["results"] if r["status"] in ("fail", "error")]
    if shown:
        table = Table(title=f"quality of {document['database']}", title_justify="left")
        table.add_column("severity")
        table.add_column("what was found (check)", overflow="fold")
        table.add_column("example ids", max_width=24, overflow="fold")
        shown.sort(key=lambda r: (r["severity"] != "fatal", -(r["percentage"] or 0)))
        for result in shown:
            bad = result["status"] == "error" or result["severity"] == "fatal"
            style = "red" if bad else "yellow"
            ids = ", ".join(str(e["id"]) for e in result.get("examples", []))
            table.add_row(
                f"[{style}]{result['severity']}[/]"
                + ("\n[red]error[/]" if result["status"] == "error" else ""),
                f"{escape(result['sentence'])}\n[dim]{result['check_id']}[/]",
                ids,
            )
        console.print(table)
    counts = ", ".join(f"{n:,} {status}" for status, n in document["counts"].items())
    console.print(f"{len(document['results']):,} checks: {counts}", highlight=False)
    style = DECISION_STYLE[document["decision"]]
    submission = document["submission"]
    console.print(
        f"decision: [{style}]{document['decision']}[/] "
        f"(submission {submission['id']} of {submission['at']})",
        highlight=False,
    )


def write_reports(document: Mapping[str, Any], report: Path | None, html: Path | None) -> None:
    if report is not None:
        write_atomically(report, json.dumps(document, indent=2) + "\n")
        console.print(f"report: {report}")
    if html is not None:
        from accord.quality.html import render_report

        write_atomically(html, render_report(document))
        console.print(f"html report: {html}")


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place."""
    from accord.errors import DataError

    try:
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as error:
        raise DataError(f"cannot write the report {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def register(app: typer.Typer) -> None:
    app.add_typer(quality_app, name="quality")
