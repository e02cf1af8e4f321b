"""``accord ingest``: load a member's data into its OMOP CDM, one source per sub-command.

Extension points, for each new source (``ingest fhir``, ``ingest csv``) in its own module:

* ``ingest_app`` – the Typer group; add the command with ``@ingest_app.command("fhir")``.
* ``run_ingest`` – opens the target, shows progress, runs ONE load, writes the report and
  prints the summary, so every source behaves the same; pass it the function that loads.
* ``DbOption``, ``SchemaOption``, ``ReportOption``, ``RejectsOption`` – the shared options,
  so every source spells ``--db``, ``--schema``, ``--report`` and ``--rejects`` alike.

Rejected rows do not fail the command (exit 0; the summary and rejects file list them);
anything that stops the load is a :class:`accord.errors.DataError` (exit 20) and leaves
the database as it was. Every load is a submission to the quality gate: a quarantined
one is rolled back and recorded, and the command exits 21.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer
from rich.console import Console
from rich.table import Table

from accord.cli.basics import StageProgress, progress_bar
from accord.cli.quality import DECISION_STYLE
from accord.errors import ExitCode

if TYPE_CHECKING:
    from accord.ingest import CdmTarget, LoadReport

console = Console()

DEFAULT_REJECTS: Final = Path("accord-rejects.ndjson")
_REASONS_SHOWN: Final = 5

Progress = Callable[[str, int, int], None]
Ingest = Callable[["CdmTarget", "LoadReport", Progress], None]
"""What a source does inside the load: ``ingest(target, report, progress)``."""

ingest_app = typer.Typer(
    help="Load a member's data into its OMOP CDM: one transaction per load, "
    "re-loading the same source adds nothing.",
    no_args_is_help=True,
)

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        help="the CDM to load into: a .duckdb file (created if missing) or a postgresql:// DSN",
    ),
]
SchemaOption = Annotated[
    str | None, typer.Option("--schema", help="the schema holding the CDM (default: the usual)")
]
ReportOption = Annotated[
    Path | None, typer.Option("--report", help="also write the load report here, as JSON")
]
RejectsOption = Annotated[
    Path,
    typer.Option(
        "--rejects",
        help="where rejected rows go, one JSON object a line (written only if there are any)",
    ),
]


def run_ingest(
    kind: str,
    source: str,
    ingest: Ingest,
    *,
    db: str,
    schema: str | None,
    report_file: Path | None,
    rejects_file: Path,
) -> LoadReport:
    """Run one load from a source and show what it did; returns the finished report."""
    from accord.ingest import CdmTarget, LoadReport

    report = LoadReport(kind=kind, source=source, rejects_path=rejects_file)
    with CdmTarget.open(db, schema=schema) as target, progress_bar() as bar:
        ingest(target, report, StageProgress(bar))
    if report_file is not None:
        report.write(report_file)
    print_summary(report, report_file)
    if report.quality is not None and report.quality["decision"] == "quarantined":
        raise typer.Exit(ExitCode.QUARANTINED)
    return report


def print_summary(report: LoadReport, report_file: Path | None = None) -> None:
    """Rows per table, rejects by reason, unmapped codes, notes and time taken."""
    summary = report.to_json()
    table = Table(title=f"{report.kind} load from {report.source}", title_justify="left")
    table.add_column("CDM table")
    table.add_column("rows loaded", justify="right")
    table.add_column("already loaded", justify="right")
    for name in sorted(set(summary["rows"]) | set(summary["skipped_existing"])):
        table.add_row(
            name,
            f"{summary['rows'].get(name, 0):,}",
            f"{summary['skipped_existing'].get(name, 0):,}",
        )
    skipped_total = sum(summary["skipped_existing"].values())
    table.add_section()
    table.add_row("total", f"{summary['rows_total']:,}", f"{skipped_total:,}", style="bold")
    console.print(table)
    rejects = summary["rejects"]
    if rejects["count"]:
        console.print(f"[yellow]{rejects['count']:,} rejected[/] → {rejects['file']}")
        for reason, count in list(rejects["by_reason"].items())[:_REASONS_SHOWN]:
            console.print(f"  {count:>8,}  {reason}", highlight=False)
    else:
        console.print("no rejects")
    unmapped = summary["unmapped"]
    if unmapped["total"]:
        console.print(
            f"{unmapped['total']:,} codes without a standard concept "
            f"({unmapped['distinct']:,} distinct)"
        )
    for note in summary["notes"]:
        console.print(f"note: {note}", highlight=False)
    quality = summary["quality"]
    if quality is not None:
        style = DECISION_STYLE[quality["decision"]]
        console.print(
            f"quality gate: [{style}]{quality['decision']}[/] "
            f"(submission {quality['submission_id']})",
            highlight=False,
        )
        for failing in quality["failing"][:_REASONS_SHOWN]:
            console.print(f"  {failing['severity']:>16}  {failing['sentence']}", highlight=False)
        if quality["decision"] == "quarantined":
            console.print(
                "[red]quarantined: nothing from this load was kept[/]; fix the source and "
                "load it again"
            )
        console.print("steward's report: accord quality report --db DB --html report.html")
    vocabulary = summary["vocabulary_version"] or "none loaded"
    console.print(f"vocabulary: {vocabulary}; took {summary['seconds']:.1f} s")
    if report_file is not None:
        console.print(f"report: {report_file}")


@ingest_app.command("omop")
def omop(
    directory: Annotated[
        Path,
        typer.Argument(
            help="folder of OMOP CDM v5.4 CSV files (PERSON.csv, ...)",
            exists=True,
            file_okay=False,
        ),
    ],
    db: DbOption,
    schema: SchemaOption = None,
    report: ReportOption = None,
    rejects: RejectsOption = DEFAULT_REJECTS,
) -> None:
    """Load a CDM v5.4 CSV export (upper- or lower-case names, comma or tab); ids are kept.

    Vocabulary files are loaded only into a CDM that has no vocabulary yet.
    """
    from accord.ingest.omop import ingest_omop_csv

    def load(target: CdmTarget, load_report: LoadReport, progress: Progress) -> None:
        ingest_omop_csv(directory, target, load_report, progress=progress)

    run_ingest(
        "omop",
        str(directory),
        load,
        db=db,
        schema=schema,
        report_file=report,
        rejects_file=rejects,
    )


@ingest_app.command("fhir")
def fhir(
    path: Annotated[
        Path,
        typer.Argument(
            help="a Bulk Data export folder (Type.ndjson, Type.000.ndjson, .gz), a Bundle, "
            "or a folder of Bundles",
            exists=True,
        ),
    ],
    db: DbOption,
    schema: SchemaOption = None,
    report: ReportOption = None,
    rejects: RejectsOption = DEFAULT_REJECTS,
    national_id_system: Annotated[
        str | None,
        typer.Option(help="Patient.identifier system holding the national id, if any"),
    ] = None,
) -> None:
    """Load FHIR R4 resources; the standard concept's domain decides each row's table.

    A target without any vocabulary first gets the starter vocabulary, and the report
    says so; import a full vocabulary with ``accord vocab import`` for real data.
    """
    from accord.ingest.fhir import ingest_fhir
    from accord.vocab import STARTER_VOCABULARY_VERSION, load_starter_vocabulary

    def load(target: CdmTarget, load_report: LoadReport, progress: Progress) -> None:
        if not target.has_rows("concept"):
            load_starter_vocabulary(target.connection)
            load_report.note(
                f"the target had no vocabulary: loaded {STARTER_VOCABULARY_VERSION} first"
            )
        ingest_fhir(
            path, target, load_report, progress=progress, national_id_system=national_id_system
        )

    run_ingest(
        "fhir", str(path), load, db=db, schema=schema, report_file=report, rejects_file=rejects
    )


@ingest_app.command("csv")
def csv(
    mapping: Annotated[
        Path,
        typer.Argument(
            help="the member's YAML mapping file describing its CSV files",
            exists=True,
            dir_okay=False,
        ),
    ],
    db: DbOption,
    schema: SchemaOption = None,
    report: ReportOption = None,
    rejects: RejectsOption = DEFAULT_REJECTS,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="folder holding the CSV files (default: the mapping file's folder)",
            exists=True,
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Load a member's own CSV files as its mapping file describes them.

    The mapping file is checked whole before any row is read. A target without any
    vocabulary first gets the starter vocabulary, and the report says so.
    """
    from accord.ingest.csv import ingest_csv
    from accord.vocab import STARTER_VOCABULARY_VERSION, load_starter_vocabulary

    def load(target: CdmTarget, load_report: LoadReport, progress: Progress) -> None:
        if not target.has_rows("concept"):
            load_starter_vocabulary(target.connection)
            load_report.note(
                f"the target had no vocabulary: loaded {STARTER_VOCABULARY_VERSION} first"
            )
        ingest_csv(mapping, target, load_report, data_dir=data_dir, progress=progress)

    run_ingest(
        "csv", str(mapping), load, db=db, schema=schema, report_file=report, rejects_file=rejects
    )


@ingest_app.command("attach")
def attach(
    dsn: Annotated[str, typer.Argument(help="postgresql:// DSN of the member's database")],
    schema: Annotated[str, typer.Option(help="schema that holds the CDM")],
    node_config: Annotated[
        Path | None,
        typer.Option(help="point this node.json at the CDM, to be queried in place"),
    ] = None,
) -> None:
    """Attach a CDM that already lives in PostgreSQL: check it, copy nothing.

    The CDM as it stands is one submission to the quality gate; its node serves it only
    if the gate does not quarantine it."""
    import json

    from accord.ingest.omop import attach_postgres
    from accord.node.config import load_node_config, write_node_config
    from accord.quality.gate import submit_database

    attached = attach_postgres(dsn, schema)
    console.print(f"[green]ok[/] {attached}")
    verdict = submit_database(dsn, kind="attach", source=f"schema {schema}", schema=schema)
    style = DECISION_STYLE[verdict.decision]
    console.print(
        f"quality gate: [{style}]{verdict.decision}[/] (submission {verdict.submission_id}); "
        "steward's report: accord quality report --db DSN --schema SCHEMA --html report.html",
        highlight=False,
    )
    if node_config is not None:
        config = load_node_config(node_config)
        raw = json.loads(node_config.read_text(encoding="utf-8"))
        raw["database"] = attached.database_config()
        updated = type(config).model_validate(raw)
        write_node_config(node_config, updated)
        console.print(f"{node_config} now queries it in place")


def register(app: typer.Typer) -> None:
    app.add_typer(ingest_app, name="ingest")
