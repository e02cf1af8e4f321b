"""Planted defects: the quality gate finds every class with exactly the planted count,
and nothing fails on the same member left clean."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest

from accord.errors import DataError
from accord.quality import CheckResult, run_checks
from accord.synth import ConsortiumManifest, generate_consortium
from accord.synth.defects import DEFECTS, plant_defects

AS_OF = date(2025, 12, 31)
PERSONS = 800
CHANGED_TABLES = ("person", "condition_occurrence", "procedure_occurrence", "drug_exposure")


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean hospital member's database (copy it before changing it)."""
    directory = tmp_path_factory.mktemp("clean")
    manifest = generate_consortium(directory, members=1, persons_per_member=PERSONS, seed=5)
    return directory / manifest.members[0].db_file


def copy_of(clean: Path, directory: Path, name: str = "member.duckdb") -> Path:
    target = directory / name
    shutil.copyfile(clean, target)
    return target


def gate(path: Path) -> dict[str, CheckResult]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {r.check_id: r for r in run_checks(con, "duckdb", today=AS_OF)}


def contents(path: Path) -> list[object]:
    with duckdb.connect(str(path), read_only=True) as con:
        tables = [*CHANGED_TABLES, "measurement", "concept"]
        return [con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables]


def test_a_clean_member_fails_no_check(clean: Path) -> None:
    results = gate(clean)
    assert {r.check_id for r in results.values() if r.status in ("fail", "error")} == set()
    # Every planted class's check runs on the clean member (none is missing or skipped).
    assert {d.check_id for d in DEFECTS} <= set(results)


def test_every_clean_member_kind_fails_no_check(tmp_path: Path) -> None:
    manifest = generate_consortium(tmp_path, members=5, persons_per_member=300, seed=2)
    for member in manifest.members:
        results = gate(tmp_path / member.db_file).values()
        failing = {r.check_id for r in results if r.status in ("fail", "error")}
        assert failing == set(), member.id


@pytest.mark.parametrize("rate", [0.5, 0.02])
def test_the_gate_counts_every_planted_class_exactly(
    clean: Path, tmp_path: Path, rate: float
) -> None:
    path = copy_of(clean, tmp_path)
    planted = plant_defects(path, rate=rate, seed=3, today=AS_OF)
    assert list(planted) == [d.check_id for d in DEFECTS]
    assert all(count >= 1 for count in planted.values()), planted
    results = gate(path)
    found = {check_id: results[check_id].violating for check_id in planted}
    assert found == planted
    for check_id in planted:
        result = results[check_id]
        if rate == 0.5:
            assert result.status == "fail", check_id
        else:  # a check tolerating a few violating rows may still pass
            assert result.violating is not None
            assert result.total
            over = 100 * result.violating / result.total > result.threshold
            assert result.status == ("fail" if over else "pass"), check_id


def test_each_changed_row_belongs_to_one_class(clean: Path, tmp_path: Path) -> None:
    path = copy_of(clean, tmp_path)
    planted = plant_defects(path, rate=0.5, seed=9, today=AS_OF)
    with (
        duckdb.connect(str(path), read_only=True) as now,
        duckdb.connect(str(clean), read_only=True) as before,
    ):
        for table in (*CHANGED_TABLES, "measurement"):
            # Rows are matched by primary key (the first column), which planting keeps.
            query = f"SELECT * FROM {table} ORDER BY 1"
            rows = before.execute(query).fetchall()
            changed = sum(a != b for a, b in zip(rows, now.execute(query).fetchall(), strict=True))
            expected = sum(planted[d.check_id] for d in DEFECTS if d.table == table)
            assert changed == expected, table


def test_the_same_seed_plants_the_same_rows(clean: Path, tmp_path: Path) -> None:
    first, second, other = (copy_of(clean, tmp_path, f"{n}.duckdb") for n in "abc")
    counts = plant_defects(first, rate=0.1, seed=4, today=AS_OF)
    assert plant_defects(second, rate=0.1, seed=4, today=AS_OF) == counts
    assert contents(first) == contents(second)
    plant_defects(other, rate=0.1, seed=5, today=AS_OF)
    assert contents(other) != contents(first)


def test_rate_zero_plants_nothing(clean: Path, tmp_path: Path) -> None:
    path = copy_of(clean, tmp_path)
    assert plant_defects(path, rate=0.0, seed=1, today=AS_OF) == {}
    assert contents(path) == contents(clean)


@pytest.mark.parametrize("rate", [-0.1, 0.51, 1.0, float("nan"), float("inf"), "0.1", True])
def test_a_bad_rate_is_a_data_error(clean: Path, tmp_path: Path, rate: object) -> None:
    path = copy_of(clean, tmp_path)
    with pytest.raises(DataError, match=r"defect rate must be a fraction from 0 to 0\.5") as caught:
        plant_defects(path, rate=rate, seed=1, today=AS_OF)  # type: ignore[arg-type]
    assert repr(rate) in str(caught.value)
    assert caught.value.hint
    assert contents(path) == contents(clean)


def test_planting_twice_is_refused(clean: Path, tmp_path: Path) -> None:
    path = copy_of(clean, tmp_path)
    plant_defects(path, rate=0.01, seed=1, today=AS_OF)
    with pytest.raises(DataError, match="already has planted defects"):
        plant_defects(path, rate=0.01, seed=2, today=AS_OF)


def test_a_missing_or_foreign_database_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no member database"):
        plant_defects(tmp_path / "absent.duckdb", rate=0.1, seed=1, today=AS_OF)
    with duckdb.connect(str(tmp_path / "empty.duckdb")):
        pass
    with pytest.raises(DataError, match="not a generated OMOP CDM member"):
        plant_defects(tmp_path / "empty.duckdb", rate=0.1, seed=1, today=AS_OF)


def test_generate_consortium_records_planted_defects(tmp_path: Path) -> None:
    manifest = generate_consortium(
        tmp_path, members=1, persons_per_member=300, seed=5, defects=0.05
    )
    assert manifest.defect_rate == 0.05
    assert ConsortiumManifest.load(tmp_path) == manifest
    (member,) = manifest.members
    assert list(member.planted_defects) == [d.check_id for d in DEFECTS]
    results = gate(tmp_path / member.db_file)
    found = {check_id: results[check_id].violating for check_id in member.planted_defects}
    assert found == member.planted_defects
    with duckdb.connect(str(tmp_path / member.db_file), read_only=True) as con:
        row = con.execute("SELECT count(*) FROM concept").fetchone()
    assert row is not None
    assert member.rows["concept"] == row[0]


def test_a_clean_consortium_records_no_planted_defects(clean: Path) -> None:
    manifest = ConsortiumManifest.load(clean.parent)
    assert manifest.defect_rate == 0
    assert all(member.planted_defects == {} for member in manifest.members)


def test_generate_consortium_refuses_a_bad_rate_before_writing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="defect rate"):
        generate_consortium(tmp_path / "out", members=1, persons_per_member=10, defects=0.9)
    assert not (tmp_path / "out").exists()


def test_the_synth_command_plants_defects_at_the_given_rate(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from accord.cli import app

    out = tmp_path / "out"
    arguments = ["synth", str(out), "--members", "1", "--persons", "100", "--defects", "0.05"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    manifest = ConsortiumManifest.load(out)
    assert manifest.defect_rate == 0.05
    assert sum(manifest.members[0].planted_defects.values()) > 0

    bad = CliRunner().invoke(app, ["synth", str(tmp_path / "bad"), "--defects", "nan"])
    assert isinstance(bad.exception, DataError)
    assert "defect rate must be a fraction from 0 to 0.5, got nan" in str(bad.exception)
    assert not (tmp_path / "bad").exists()
