"""``accord quality``: run the data quality gate on a member's CDM.

The command always exits 0 once the checks have run, whatever the decision: the decision
is printed and written to the report, for a person or a script to act on. A database
that is not a CDM (tables missing) is a :class:`accord.errors.DataError` (exit 20).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from accord.quality import CheckResult, Summary

console = Console()

_DECISION_STYLE: Final = {
    "quarantined": "bold red",
    "accepted_with_warnings": "bold yellow",
    "accepted": "bold green",
}

quality_app = typer.Typer(
    help="Check a member's CDM against the data quality gate.", no_args_is_help=True
)


@quality_app.command("run")
def run(
    db: Annotated[
        str,
        typer.Option("--db", help="the CDM to check: a .duckdb file or a postgresql:// DSN"),
    ],
    schema: Annotated[
        str | None, typer.Option("--schema", help="the schema holding the CDM (default: the usual)")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="also write every result here, as JSON")
    ] = None,
) -> None:
    """Run every check; list failures and errors in plain words, and the decision."""
    from accord.ingest.engines import is_postgres_dsn, open_duckdb, open_postgres, redact_dsn
    from accord.quality import run_checks, summary

    if is_postgres_dsn(db):
        engine: Any = open_postgres(db, schema, create=False)
        shown = redact_dsn(db)
    else:
        engine = open_duckdb(Path(db), schema, create=False)
        shown = db
    try:
        results = run_checks(engine.connection, engine.dialect, schema=schema)
    finally:
        engine.close()
    outcome = summary(results)
    print_results(shown, results, outcome)
    if report is not None:
        document = {
            "database": shown,
            **outcome.to_json(),
            "results": [r.to_json() for r in results],
        }
        write_atomically(report, json.dumps(document, indent=2) + "\n")
        console.print(f"report: {report}")


def print_results(database: str, results: list[CheckResult], outcome: Summary) -> None:
    """A table of the checks that failed or could not run, then counts and the decision."""
    shown = [r for r in results if r.status in ("fail", "error")]
    if shown:
        table = Table(title=f"quality of {database}", title_justify="left")
        table.add_column("status")
        table.add_column("severity")
        table.add_column("check", overflow="fold")
        table.add_column("what was found")
        for result in sorted(shown, key=lambda r: (r.severity != "fatal", r.check_id)):
            style = "red" if result.status == "error" or result.severity == "fatal" else "yellow"
            table.add_row(
                f"[{style}]{result.status}[/]", result.severity, result.check_id, result.sentence
            )
        console.print(table)
    counts = ", ".join(f"{n:,} {status}" for status, n in outcome.counts.items())
    console.print(f"{len(results):,} checks: {counts}", highlight=False)
    style = _DECISION_STYLE[outcome.decision]
    console.print(f"decision: [{style}]{outcome.decision}[/]")


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
