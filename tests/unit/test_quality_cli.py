"""``accord quality run``: prints failures and the decision, writes the JSON report,
and exits 0 whatever the decision; the docstring examples hold."""

from __future__ import annotations

import doctest
import importlib
import json
from pathlib import Path

import duckdb
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from accord.cdm import create_cdm
from accord.cli import quality
from accord.errors import DataError


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A stand-in for the accord command."""

    quality.register(app)
    return app


def member(path: Path) -> Path:
    with duckdb.connect(str(path)) as connection:
        create_cdm(connection, "duckdb")
        connection.execute(
            "INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id, "
            "ethnicity_concept_id) VALUES (1, 0, 1990, 0, 0), (2, 0, 2999, 0, 0)"
        )
        connection.execute(
            "INSERT INTO observation_period VALUES (1, 1, DATE '2020-01-01', DATE '2021-01-01', 0),"
            " (2, 2, DATE '2020-01-01', DATE '2021-01-01', 0)"
        )
    return path


def test_run_prints_the_decision_and_writes_the_report(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Wide enough that Rich does not wrap the sentence being looked for.
    monkeypatch.setattr(quality, "console", Console(width=400))
    db = member(tmp_path / "member.duckdb")
    report = tmp_path / "quality.json"
    result = CliRunner().invoke(app, ["quality", "run", "--db", str(db), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "1 of 2 rows in person have a year_of_birth outside 1850" in result.output
    assert "decision: accepted_with_warnings" in result.output
    document = json.loads(report.read_text())
    assert document["decision"] == "accepted_with_warnings"
    failed = {r["check_id"] for r in document["results"] if r["status"] == "fail"}
    # The person born in 2999 was also observed before birth.
    assert failed == {
        "plausibility.range.person.year_of_birth",
        "plausibility.after_birth.observation_period.observation_period_start_date",
    }
    assert document["counts"]["fail"] == len(failed)
    assert list(tmp_path.glob(".quality.json.*")) == []


def test_a_database_that_is_not_a_cdm_is_a_data_error(app: typer.Typer, tmp_path: Path) -> None:
    db = tmp_path / "other.duckdb"
    with duckdb.connect(str(db)) as connection:
        connection.execute("CREATE TABLE person (person_id INTEGER)")
    result = CliRunner().invoke(app, ["quality", "run", "--db", str(db)])
    assert isinstance(result.exception, DataError)
    assert "observation_period" in str(result.exception)


def test_a_missing_database_is_not_created(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["quality", "run", "--db", str(tmp_path / "none.duckdb")])
    assert isinstance(result.exception, DataError)
    assert not (tmp_path / "none.duckdb").exists()


@pytest.mark.parametrize(
    "name",
    [
        "accord.quality",
        "accord.quality.catalogue",
        "accord.quality.results",
        "accord.quality.run",
        "accord.quality.gate",
        "accord.quality.books",
        "accord.quality.html",
        "accord.quality.plausibility",
        "accord.hub.quality",
        "accord.ingest.periods",
    ],
)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0


def test_thresholds_are_set_with_a_reason_shown_and_used(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quality, "console", Console(width=400))
    db = member(tmp_path / "member.duckdb")
    birth = "plausibility.range.person.year_of_birth"
    runner = CliRunner()
    refused = runner.invoke(app, ["quality", "thresholds", "--db", str(db), "--set", f"{birth}=60"])
    assert isinstance(refused.exception, DataError)
    assert "--set needs --reason" in str(refused.exception)
    done = runner.invoke(
        app,
        ["quality", "thresholds", "--db", str(db), "--set", f"{birth}=60", "--reason", "keyed"],
    )
    assert done.exit_code == 0, done.output
    assert "1 set, 0 cleared" in done.output
    shown = runner.invoke(app, ["quality", "thresholds", "--db", str(db)])
    assert birth in shown.output
    assert "keyed" in shown.output
    report = tmp_path / "quality.json"
    run = runner.invoke(app, ["quality", "run", "--db", str(db), "--report", str(report)])
    assert run.exit_code == 0, run.output
    result = next(r for r in json.loads(report.read_text())["results"] if r["check_id"] == birth)
    assert (result["status"], result["threshold"], result["threshold_reason"]) == (
        "pass",
        60.0,
        "keyed",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("plausibility.range.person.nope:\n  threshold: 1\n  reason: x\n", "unknown check"),
        (
            "plausibility.range.person.year_of_birth:\n  threshold: high\n  reason: x\n",
            "threshold 'high' is not a number",
        ),
    ],
)
def test_a_bad_threshold_file_changes_nothing(
    app: typer.Typer, tmp_path: Path, text: str, message: str
) -> None:
    db = member(tmp_path / "member.duckdb")
    file = tmp_path / "thresholds.yaml"
    file.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(
        app, ["quality", "thresholds", "--db", str(db), "--file", str(file)]
    )
    assert isinstance(result.exception, DataError)
    assert message in str(result.exception)
    assert str(file) in str(result.exception)
    shown = CliRunner().invoke(app, ["quality", "thresholds", "--db", str(db)])
    assert "no overrides" in shown.output


def test_report_writes_a_recorded_submission_through_the_node_config(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quality, "console", Console(width=400))
    db = member(tmp_path / "member.duckdb")
    node = tmp_path / "node.json"
    node.write_text(
        json.dumps(
            {
                "member": "m",
                "hub_url": "http://127.0.0.1:1",
                "hub_public_key": "hub.pub",
                "key": "m.key",
                "database": {"engine": "duckdb", "path": "member.duckdb"},
            }
        ),
        encoding="utf-8",
    )
    none = CliRunner().invoke(app, ["quality", "report", "--node", str(node)])
    assert isinstance(none.exception, DataError)
    assert "no record of any submission" in str(none.exception)
    run = CliRunner().invoke(app, ["quality", "run", "--node", str(node)])
    assert run.exit_code == 0, run.output
    html, report = tmp_path / "r.html", tmp_path / "r.json"
    again = CliRunner().invoke(
        app,
        ["quality", "report", "--node", str(node), "--html", str(html), "--report", str(report)],
    )
    assert again.exit_code == 0, again.output
    document = json.loads(report.read_text())
    assert document["decision"] == "accepted_with_warnings"
    assert document["submission"]["kind"] == "check"
    assert "accepted with warnings" in html.read_text(encoding="utf-8").lower().replace("_", " ")
    both = CliRunner().invoke(app, ["quality", "report", "--node", str(node), "--db", str(db)])
    assert isinstance(both.exception, DataError)
    assert "one of them" in str(both.exception)
