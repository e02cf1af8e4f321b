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
    ["accord.quality", "accord.quality.catalogue", "accord.quality.results", "accord.quality.run"],
)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
