"""``accord demo``: a consortium of real processes on loopback, running scenarios 1 and 6,
an imported ATLAS cohort and a survival curve."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from accord.cli.basics import StageProgress, progress_bar
from accord.cli.render import (
    coefficient_table,
    frame_table,
    quality_table,
    result_table,
    run_with_progress,
)
from accord.errors import DataError

if TYPE_CHECKING:
    from accord.analysis.glm import GlmFit
    from accord.demo import DemoLayout
    from accord.query import GlmStep
    from accord.synth import ConsortiumManifest

console = Console()
err = Console(stderr=True)


def demo(
    members: Annotated[int, typer.Option(min=3, max=5, help="number of members")] = 4,
    persons: Annotated[int, typer.Option(min=100, help="persons per member")] = 20_000,
    seed: Annotated[int, typer.Option()] = 7,
    port: Annotated[int, typer.Option(help="hub port (0 picks a free one)")] = 0,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="keep the consortium here instead of a temp dir")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="run the scenario, print, exit")] = False,
) -> None:
    """Start a hub and one node per synthetic member, then run the trial-recruitment count
    and the treatment-response logistic regression."""
    from accord.client import Client
    from accord.demo import SOURCE_FORMATS, Consortium, DemoLayout, free_port, prepare
    from accord.privacy.disclosure import apply_count
    from accord.query.atlas import cohort_from_atlas, example_definition
    from accord.query.scenarios import (
        TREATMENT_RESPONSE_COVARIATES,
        time_to_treatment,
        treatment_response,
        trial_recruitment,
    )
    from accord.trust.keys import load_identity

    if directory is not None and directory.exists() and any(directory.iterdir()):
        raise DataError(f"{directory} is not empty", hint="give an empty or new folder to --dir")
    # SIGTERM and SIGHUP unwind like Ctrl-C, so children are stopped and files removed.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    root = directory or Path(tempfile.mkdtemp(prefix="accord-demo-"))
    host = "127.0.0.1"
    port = port or free_port(host)
    layout = DemoLayout(root)
    try:
        started = time.monotonic()
        with progress_bar() as bar:
            manifest = prepare(
                root,
                members=members,
                persons=persons,
                seed=seed,
                hub_url=f"http://{host}:{port}",
                progress=StageProgress(bar),
                source_formats=True,
            )
        ids = [m.id for m in manifest.members]
        sources = dict.fromkeys(ids, "OMOP CDM (DuckDB)")
        sources.update(zip(ids, SOURCE_FORMATS, strict=False))
        with Consortium(layout, host, port) as consortium:
            with err.status("starting the hub and nodes"):
                consortium.start_hub()
                for member in ids:
                    consortium.start_node(member)
                consortium.wait_connected(ids)
            err.print(
                f"consortium of {len(ids)} members up in {time.monotonic() - started:.1f}s;"
                f" hub at {consortium.url}, logs in {layout.logs}",
                highlight=False,
            )
            analysis = trial_recruitment(manifest.as_of)
            with Client(consortium.url, load_identity(layout.researcher_key)) as client:
                result = run_with_progress(client, analysis, None, timeout=120)
                quality = client.quality()
                with err.status("scenario 6: fitting a logistic regression, step by step"):
                    model = treatment_response(manifest.as_of)
                    fitted = client.fit_glm(
                        model, names=["intercept", *TREATMENT_RESPONSE_COVARIATES]
                    )
                imported = cohort_from_atlas(example_definition(), as_of=manifest.as_of)
                atlas = run_with_progress(client, imported.count_persons(), None, timeout=120)
                survival = run_with_progress(
                    client, time_to_treatment(manifest.as_of), None, timeout=120
                )
            console.print(
                result_table(
                    result,
                    sources=sources,
                    title="Scenario 1 · trial recruitment: aged 45–75, hypertension, "
                    "no beta blocker",
                )
            )
            truth = {m.id: m.trial_recruitment for m in manifest.members}
            mismatched = [
                m.member
                for m in result.members
                if m.count is None
                or m.profile is None
                or apply_count(m.profile, truth[m.member]) != m.count
            ]
            if mismatched:
                raise DataError(
                    f"released counts differ from the generator's ground truth for:"
                    f" {', '.join(mismatched)}"
                )
            console.print(
                "[green]✓[/] every member's released count equals its ground truth after"
                " disclosure; the hub saw no row"
            )
            console.print(
                coefficient_table(
                    fitted,
                    title="Scenario 6 · treatment response in type 2 diabetes: "
                    "odds of HbA1c ≤ 7% (logistic regression)",
                )
            )
            pooled = pooled_fit(layout, manifest, model)
            difference = abs(fitted.coefficients - pooled.coefficients).max()
            if difference > 1e-8:
                raise DataError("the federated regression differs from the fit on pooled rows")
            console.print(
                "[green]✓[/] the federated fit equals the fit on the members' pooled rows;"
                " only sums left each member"
            )
            console.print(
                result_table(atlas, title=f"ATLAS cohort · {imported.name or 'imported'}")
            )
            console.print(
                frame_table(
                    survival,
                    title="Kaplan-Meier · from a first type 2 diabetes diagnosis to a first "
                    "biguanide, share still untreated",
                )
            )
            console.print(quality_table(quality))
            if not once:
                _serve_until_interrupted(consortium.url)
    finally:
        if directory is None:
            shutil.rmtree(root, ignore_errors=True)


def pooled_fit(layout: DemoLayout, manifest: ConsortiumManifest, model: GlmStep) -> GlmFit:
    """The same model on the rows every node serves, stacked in one place, as a pooled
    analysis would fit it: the demo's check that federating changed nothing."""
    import duckdb
    import numpy as np

    from accord.analysis.glm import fit_partitioned
    from accord.node.config import load_node_config
    from accord.query.run import run_design

    blocks = []
    for member in manifest.members:
        database = load_node_config(layout.node_config(member.id)).database
        with duckdb.connect(str(database.path), read_only=True) as con:
            blocks.append(run_design(con, model, "duckdb"))
    design = np.vstack([x for x, _ in blocks])
    outcome = np.concatenate([y for _, y in blocks])
    return fit_partitioned([(design, outcome)], "binomial")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _serve_until_interrupted(url: str) -> None:
    try:
        err.print(f"serving at {url}; press Ctrl-C to stop", highlight=False)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        err.print("stopping the consortium")


def register(app: typer.Typer) -> None:
    app.command()(demo)
