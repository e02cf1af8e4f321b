"""``accord vocab``: bring an OMOP vocabulary (an Athena download) into a member's CDM."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import TaskID
from rich.table import Table

from accord.cli.basics import progress_bar

console = Console()
vocab_app = typer.Typer(help="Import and inspect OMOP vocabularies.", no_args_is_help=True)


@vocab_app.command("import")
def import_(
    directory: Annotated[
        Path,
        typer.Argument(help="an unpacked Athena download (CONCEPT.csv, ...)", file_okay=False),
    ],
    db: Annotated[str, typer.Option(help="member CDM: a DuckDB file or a postgresql:// DSN")],
    schema: Annotated[str | None, typer.Option(help="PostgreSQL schema of the CDM")] = None,
    report: Annotated[
        Path | None, typer.Option(help="write what was imported here as JSON")
    ] = None,
) -> None:
    """Replace the vocabulary tables in one transaction; the release version is recorded."""
    from accord.ingest import CdmTarget
    from accord.vocab.athena import find_vocabulary_files, import_vocabulary

    find_vocabulary_files(directory)  # a missing CONCEPT.csv fails before anything opens
    started = time.monotonic()
    with CdmTarget.open(db, schema=schema) as target, progress_bar() as bar:
        tasks: dict[str, TaskID] = {}

        def progress(table: str, rows: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=rows)
            bar.update(tasks[table], completed=rows, total=rows)

        result = import_vocabulary(
            directory, target.connection, target.dialect, schema=schema, progress=progress
        )
    seconds = round(time.monotonic() - started, 3)
    if report is not None:
        body = {
            "kind": "vocabulary",
            "source": str(directory),
            "vocabulary_version": result.version,
            "rows": dict(result.rows),
            "missing_files": list(result.missing_files),
            "seconds": seconds,
        }
        tmp = report.with_name(report.name + ".tmp")
        tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        tmp.replace(report)
    table = Table(title=f"vocabulary {result.version}", title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in result.rows.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    if result.missing_files:
        console.print(f"not in the download (left empty): {', '.join(result.missing_files)}")


def register(app: typer.Typer) -> None:
    app.add_typer(vocab_app, name="vocab")
