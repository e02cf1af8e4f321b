"""The catalogue run on synthetic members: clean data passes, planted defects are counted
exactly, and one broken check does not stop the others."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from accord.cdm import create_cdm
from accord.errors import DataError
from accord.quality import Check, CheckResult, default_catalogue, run_checks, summary
from accord.synth import ConsortiumManifest, generate_consortium

PERSONS = 300


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ConsortiumManifest]:
    directory = tmp_path_factory.mktemp("quality")
    manifest = generate_consortium(directory, members=3, persons_per_member=PERSONS, seed=5)
    return directory, manifest


@pytest.fixture
def member_copy(
    consortium: tuple[Path, ConsortiumManifest], tmp_path: Path
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A writable copy of the first member, to plant defects in."""
    directory, manifest = consortium
    copy = tmp_path / "member.duckdb"
    shutil.copy(directory / manifest.members[0].db_file, copy)
    connection = duckdb.connect(str(copy))
    yield connection
    connection.close()


def by_id(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.check_id: r for r in results}


def test_clean_members_have_no_failures_and_no_errors(
    consortium: tuple[Path, ConsortiumManifest],
) -> None:
    directory, manifest = consortium
    assert len({member.kind for member in manifest.members}) > 1
    for member in manifest.members:
        with duckdb.connect(str(directory / member.db_file), read_only=True) as connection:
            results = run_checks(connection, "duckdb")
        assert len(results) == len(default_catalogue())
        broken = [r.check_id for r in results if r.status == "error"]
        failed = [r.sentence for r in results if r.status == "fail"]
        assert broken == [], member.id
        assert failed == [], member.id
        assert summary(results).decision == "accepted"
        assert by_id(results)["conformance.required.person.person_id"].total == PERSONS


def plant(
    connection: duckdb.DuckDBPyConnection, table: str, key: str, rows: int, change: str
) -> None:
    # Test-only SQL with fixed names; the quality code itself never splices text.
    connection.execute(
        f"UPDATE {table} SET {change} WHERE {key} IN "
        f"(SELECT {key} FROM {table} ORDER BY {key} LIMIT {rows})"
    )


def test_planted_defects_are_counted_exactly(member_copy: duckdb.DuckDBPyConnection) -> None:
    plant(member_copy, "person", "person_id", 7, "year_of_birth = 2999")
    plant(
        member_copy,
        "condition_occurrence",
        "condition_occurrence_id",
        5,
        "person_id = person_id + 1000000000",
    )
    unknown = 2147000000
    assert member_copy.execute(
        f"SELECT count(*) FROM concept WHERE concept_id = {unknown}"
    ).fetchone() == (0,)
    plant(member_copy, "measurement", "measurement_id", 4, f"measurement_concept_id = {unknown}")
    plant(
        member_copy,
        "drug_exposure",
        "drug_exposure_id",
        3,
        "drug_exposure_start_date = drug_exposure_end_date + 5",
    )
    results = by_id(run_checks(member_copy, "duckdb"))
    expected = {
        "plausibility.range.person.year_of_birth": 7,
        "conformance.foreign_key.condition_occurrence.person_id": 5,
        "conformance.concept.measurement.measurement_concept_id": 4,
        "plausibility.start_before_end.drug_exposure.drug_exposure_start_date": 3,
    }
    for check_id, count in expected.items():
        assert (results[check_id].violating, results[check_id].status) == (count, "fail"), check_id
    assert results["conformance.foreign_key.condition_occurrence.person_id"].sentence.startswith(
        "5 of "
    )
    # An unknown concept is reported once, as unknown, not again as non-standard.
    assert results["conformance.standard_concept.measurement.measurement_concept_id"].violating == 0
    assert summary(list(results.values())).decision == "quarantined"


def test_an_empty_table_is_not_applicable(member_copy: duckdb.DuckDBPyConnection) -> None:
    member_copy.execute("DELETE FROM drug_exposure")
    results = [r for r in run_checks(member_copy, "duckdb") if ".drug_exposure." in r.check_id]
    assert results
    assert {r.status for r in results} == {"not_applicable"}


def test_an_optional_field_never_filled_in_is_not_applicable(
    member_copy: duckdb.DuckDBPyConnection,
) -> None:
    member_copy.execute("UPDATE condition_occurrence SET visit_occurrence_id = NULL")
    results = by_id(run_checks(member_copy, "duckdb"))
    assert results["conformance.foreign_key.condition_occurrence.visit_occurrence_id"].status == (
        "not_applicable"
    )
    assert results["conformance.foreign_key.condition_occurrence.person_id"].status == "pass"


def test_a_broken_check_errors_and_the_rest_still_run(
    member_copy: duckdb.DuckDBPyConnection,
) -> None:
    broken = Check("required", "person", "no_such_field", "fatal", 0.0)
    checks = [c for c in default_catalogue() if c.table == "person"]
    results = by_id(run_checks(member_copy, "duckdb", checks=[*checks, broken]))
    assert results[broken.id].status == "error"
    assert "no_such_field" in (results[broken.id].error or "")
    assert all(results[c.id].status == "pass" for c in checks if c.kind == "required")
    assert summary(list(results.values())).decision == "quarantined"


def test_a_wrongly_typed_column_errors_only_its_own_checks(
    member_copy: duckdb.DuckDBPyConnection,
) -> None:
    member_copy.execute("ALTER TABLE drug_exposure ALTER drug_exposure_end_date TYPE VARCHAR")
    member_copy.execute("UPDATE drug_exposure SET drug_exposure_end_date = 'soon'")
    results = by_id(run_checks(member_copy, "duckdb"))
    pair = "plausibility.start_before_end.drug_exposure.drug_exposure_start_date"
    assert results[pair].status == "error"
    assert results["conformance.required.drug_exposure.drug_concept_id"].status == "pass"


def test_batched_and_one_at_a_time_agree(member_copy: duckdb.DuckDBPyConnection) -> None:
    plant(member_copy, "person", "person_id", 2, "year_of_birth = 1700")
    checks = [c for c in default_catalogue() if c.table in ("person", "visit_occurrence")]
    batched = run_checks(member_copy, "duckdb", checks=checks)
    alone = [run_checks(member_copy, "duckdb", checks=[c])[0] for c in checks]
    assert batched == alone


def test_a_database_without_the_cdm_tables_is_refused(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "other.duckdb")) as connection:
        connection.execute("CREATE TABLE person (person_id INTEGER)")
        with pytest.raises(DataError, match=r"tables missing: .*concept.*observation_period"):
            run_checks(connection, "duckdb")


def test_a_schema_holds_the_cdm(tmp_path: Path) -> None:
    with duckdb.connect() as connection:
        connection.execute('CREATE SCHEMA "cdm one"')
        create_cdm(connection, "duckdb", schema="cdm one")
        connection.execute(
            'INSERT INTO "cdm one".person (person_id, gender_concept_id, year_of_birth, '
            "race_concept_id, ethnicity_concept_id) VALUES (1, 0, 1990, 0, 0)"
        )
        results = by_id(run_checks(connection, "duckdb", schema="cdm one"))
        assert results["conformance.required.person.person_id"].status == "pass"
        assert results["completeness.observation_period.person.person_id"].violating == 1
        with pytest.raises(DataError, match="schema 'elsewhere'"):
            run_checks(connection, "duckdb", schema="elsewhere")


def test_the_quality_benchmark_reports_checks_per_second() -> None:
    from accord.bench import quality as bench_quality

    figures = bench_quality.run(persons=200)
    assert figures["bench"] == "quality"
    assert figures["checks"] == len(default_catalogue())
    assert figures["value"] == pytest.approx(figures["checks"] / figures["seconds"], rel=0.1)


def test_new_defects_on_a_synthetic_member_are_counted_and_found(
    member_copy: duckdb.DuckDBPyConnection,
) -> None:
    from datetime import date

    from accord.quality.run import find_examples

    plant(
        member_copy,
        "condition_occurrence",
        "condition_occurrence_id",
        3,
        "condition_start_date = DATE '2099-01-01', condition_end_date = NULL",
    )
    men = "SELECT person_id FROM person WHERE gender_concept_id = 8507"
    member_copy.execute(
        "UPDATE condition_occurrence SET condition_concept_id = 198803"
        " WHERE condition_occurrence_id IN (SELECT condition_occurrence_id"
        f" FROM condition_occurrence WHERE person_id NOT IN ({men})"
        " ORDER BY condition_occurrence_id DESC LIMIT 2)"
    )
    today = date(2030, 1, 1)
    checks = [c for c in default_catalogue() if c.table == "condition_occurrence"]
    results = by_id(run_checks(member_copy, "duckdb", checks=checks, today=today))
    future = "plausibility.future.condition_occurrence.condition_start_date"
    sex = "plausibility.sex.condition_occurrence.condition_concept_id"
    assert (results[future].violating, results[sex].violating) == (3, 2)
    failed = [c for c in checks if results[c.id].status == "fail"]
    examples = find_examples(member_copy, "duckdb", failed, today=today)
    first = [
        row[0]
        for row in member_copy.execute(
            "SELECT condition_occurrence_id FROM condition_occurrence ORDER BY 1 LIMIT 3"
        ).fetchall()
    ]
    assert examples[future] == first
    assert len(examples[sex]) == 2
