"""The ``accord`` command line: one Typer app, one sub-module per room.

User errors are printed as one line with what to do and exit with their component's
code (``accord exit-codes`` lists them); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from accord.cli import basics, demo, ingest, quality, services, vocab
from accord.errors import UserError

app = typer.Typer(
    name="accord",
    help="Federated analytics for health-data consortia: data stays home, "
    "only disclosure-checked aggregates travel.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
basics.register(app)
services.register(app)
demo.register(app)
ingest.register(app)
vocab.register(app)
quality.register(app)


def main() -> None:
    err = Console(stderr=True)
    try:
        app()
    except UserError as error:
        # One line each, never wrapped, so scripts and people read the same thing.
        err.print(f"[bold red]error:[/] {error.message}", highlight=False, soft_wrap=True)
        if error.hint:
            err.print(f"[dim]  → {error.hint}[/]", highlight=False, soft_wrap=True)
        sys.exit(int(error.exit_code))
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
