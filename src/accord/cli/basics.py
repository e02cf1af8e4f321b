"""Commands that need no running service: keys, synthetic data, audit, benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from accord.errors import EXIT_CODE_HELP, AuditError

console = Console()


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        TextColumn("{task.completed:>10,.0f}/{task.total:,.0f}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


class StageProgress:
    """Adapts ``progress(stage, done, total)`` callbacks to one Rich bar per stage."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        task = self.tasks.get(stage)
        if task is None:
            task = self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(task, completed=done, total=total)


def keys(
    name: Annotated[
        str, typer.Argument(help="member, hub or researcher name, e.g. northgate-hospital")
    ],
    directory: Annotated[
        Path, typer.Option("--dir", help="where to write NAME.key and NAME.pub")
    ] = Path(),
    overwrite: Annotated[bool, typer.Option(help="replace existing key files")] = False,
) -> None:
    """Create an Ed25519 signing key and an X25519 encryption key (private file 0600)."""
    from accord.trust.keys import generate_identity, write_identity

    identity = generate_identity(name)
    private, public = write_identity(identity, directory, overwrite=overwrite)
    console.print(f"wrote {private} (private, 0600) and {public}")
    console.print(f"fingerprint {identity.public.fingerprint()}")


def synth(
    out: Annotated[
        Path, typer.Argument(help="folder for the members' DuckDB files and manifest.json")
    ],
    members: Annotated[int, typer.Option(min=1, max=50)] = 4,
    persons: Annotated[int, typer.Option(help="persons per member", min=1)] = 5000,
    seed: Annotated[int, typer.Option()] = 7,
    defects: Annotated[
        float,
        typer.Option(
            metavar="RATE",
            help="plant data quality defects of every kind in this fraction (0 to 0.5) of "
            "their eligible rows; the exact counts go to manifest.json (planted_defects)",
        ),
    ] = 0.0,
) -> None:
    """Generate a synthetic consortium: one OMOP CDM per member, plus a ground-truth manifest.

    Each member is then judged by the quality gate as one submission, as any member's data
    is before its node serves it."""
    from accord.quality.gate import submit_database
    from accord.synth import generate_consortium

    with progress_bar() as bar:
        manifest = generate_consortium(
            out,
            members=members,
            persons_per_member=persons,
            seed=seed,
            progress=StageProgress(bar),
            defects=defects,
        )
        stage = StageProgress(bar)
        decisions = {}
        for index, member in enumerate(manifest.members):
            verdict = submit_database(
                out / member.db_file, kind="synth", source="accord synth", member=member.id
            )
            decisions[member.id] = verdict.decision
            stage("quality gate", index + 1, len(manifest.members))
    table = Table(title=f"{len(manifest.members)} members in {out}", title_justify="left")
    for column in ("member", "kind", "persons", "planted defects", "quality gate"):
        table.add_column(
            column, justify="right" if column in ("persons", "planted defects") else "left"
        )
    for member in manifest.members:
        planted = sum(member.planted_defects.values())
        table.add_row(
            member.id, member.kind, f"{member.persons:,}", f"{planted:,}", decisions[member.id]
        )
    console.print(table)
    console.print(f"manifest: {out / 'manifest.json'}")


audit_app = typer.Typer(help="Read and verify audit logs.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(
    log: Annotated[Path, typer.Argument(help="audit.db of a hub or a node")],
    public_key: Annotated[Path, typer.Option("--pub", help="the log owner's .pub file")],
) -> None:
    """Recompute the hash chain and signatures; name the first broken entry."""
    from accord.trust.audit import verify_log
    from accord.trust.keys import load_public

    public = load_public(public_key)
    report = verify_log(log, public.verify_key)
    if not report.ok:
        raise AuditError(
            f"audit log {log} is broken at entry {report.first_broken_seq}: {report.reason}",
            hint="the log was edited or truncated after it was written",
        )
    console.print(f"[green]ok[/] {report.entries} entries, chain and signatures intact")


def bench(name: Annotated[str, typer.Argument(help="benchmark name, e.g. synth")]) -> None:
    """Run a named benchmark; the last line printed is one JSON object of its figures."""
    from accord import bench as benchmarks

    benchmarks.check_name(name)
    with progress_bar() as bar:
        result = benchmarks.run(name, progress=StageProgress(bar))
    print(json.dumps(result))


def exit_codes() -> None:
    """List the exit codes and what each means."""
    for code, text in EXIT_CODE_HELP.items():
        console.print(f"{int(code):>3}  {code.name.lower():<11} {text}")


def register(app: typer.Typer) -> None:
    app.command()(keys)
    app.command()(synth)
    app.command()(bench)
    app.command("exit-codes")(exit_codes)
    app.add_typer(audit_app, name="audit")
