"""The gate around every load: verdicts recorded with trends and examples, quarantined
loads rolled back, thresholds overridden with reasons, and what a node may serve."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from accord.errors import DataError
from accord.ingest import CdmTarget, LoadReport
from accord.quality import gate
from accord.quality.books import (
    Override,
    ensure_tables,
    latest_status,
    overrides,
    set_overrides,
    submissions,
)
from accord.synth import ConsortiumManifest, generate_consortium

PERSONS = 300
ORPHAN = "conformance.foreign_key.condition_occurrence.person_id"
BIRTH = "plausibility.range.person.year_of_birth"
SUPPLY = "plausibility.range.drug_exposure.days_supply"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ConsortiumManifest]:
    directory = tmp_path_factory.mktemp("gate")
    manifest = generate_consortium(directory, members=1, persons_per_member=PERSONS, seed=8)
    return directory, manifest


@pytest.fixture
def member(generated: tuple[Path, ConsortiumManifest], tmp_path: Path) -> Path:
    """A writable copy of a clean generated member."""
    directory, manifest = generated
    copy = tmp_path / "member.duckdb"
    shutil.copy(directory / manifest.members[0].db_file, copy)
    return copy


def load_conditions(target: CdmTarget, person_ids: list[int], tag: str) -> LoadReport:
    """One load of condition rows for ``person_ids`` (an id not in person is an orphan)."""
    report = LoadReport(kind="test", source=tag)
    with target.load(report) as load:
        ids = load.allocate_ids("condition_occurrence", len(person_ids))
        rows = pa.table(
            {
                "condition_occurrence_id": ids,
                "person_id": pa.array(person_ids, pa.int64()),
                "condition_concept_id": [0] * len(person_ids),
                "condition_start_date": pa.array(
                    [pa.scalar(19000, pa.date32()).as_py()] * len(person_ids), pa.date32()
                ),
                "condition_type_concept_id": [32817] * len(person_ids),
            }
        )
        load.append(
            "condition_occurrence",
            rows,
            source_keys=pa.array([f"{tag}:{i}" for i in range(len(person_ids))]),
            source_file=f"{tag}.csv",
            locators=pa.array([f"line {i + 2}" for i in range(len(person_ids))]),
            mapping_version="test",
        )
    return report


def conditions(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as connection:
        row = connection.execute("SELECT count(*) FROM condition_occurrence").fetchone()
    assert row is not None
    return int(row[0])


def test_a_clean_generated_member_is_accepted_and_served(member: Path) -> None:
    verdict = gate.submit_database(member, kind="synth", source="test")
    assert verdict.decision == "accepted"
    assert verdict.report["counts"]["fail"] == 0
    assert verdict.report["counts"]["error"] == 0
    with duckdb.connect(str(member), read_only=True) as connection:
        assert gate.serving_refusal(connection, "duckdb") is None


def test_a_database_no_submission_judged_is_not_served(member: Path) -> None:
    with duckdb.connect(str(member), read_only=True) as connection:
        reason = gate.serving_refusal(connection, "duckdb")
    assert reason is not None
    assert "has not passed the quality gate" in reason


def test_a_quarantined_load_is_rolled_back_and_recorded(member: Path) -> None:
    gate.submit_database(member, kind="synth", source="test")
    before = conditions(member)
    with CdmTarget.open(member) as target:
        report = load_conditions(target, [10**9, 10**9 + 1, 1], "bad")
        verdict = target.verdict
    assert verdict is not None
    assert verdict.decision == "quarantined"
    assert report.quality is not None
    assert report.quality["decision"] == "quarantined"
    assert any(f["check_id"] == ORPHAN for f in report.quality["failing"])
    assert conditions(member) == before  # no row of the load was kept
    orphan = next(r for r in verdict.report["results"] if r["check_id"] == ORPHAN)
    assert orphan["violating"] == 2
    # The examples name the rows and where in the source they came from.
    assert [e["source"] for e in orphan["examples"]] == ["bad.csv, line 2", "bad.csv, line 3"]
    with duckdb.connect(str(member), read_only=True) as connection:
        status = connection.execute(
            "SELECT status FROM accord_loads WHERE source = 'bad'"
        ).fetchall()
        assert status == [("quarantined",)]
        history = submissions(connection, "duckdb")
        # The earlier accepted data is still what the node serves.
        assert gate.serving_refusal(connection, "duckdb") is None
    assert [(h["decision"], h["kept"]) for h in history] == [
        ("accepted", True),
        ("quarantined", False),
    ]


def test_a_fixed_resubmission_is_accepted_and_kept(member: Path) -> None:
    gate.submit_database(member, kind="synth", source="test")
    before = conditions(member)
    with CdmTarget.open(member) as target:
        load_conditions(target, [10**9], "bad")
        load_conditions(target, [1, 2], "fixed")
        assert target.verdict is not None
        assert target.verdict.decision == "accepted"
        trend = target.verdict.report["trend"]
    assert conditions(member) == before + 2
    assert [t["decision"] for t in trend] == ["accepted", "quarantined", "accepted"]
    orphan = next(r for r in target.verdict.report["results"] if r["check_id"] == ORPHAN)
    assert orphan["previous"] == {
        "status": "fail",
        "percentage": pytest.approx(1 / (before + 1) * 100),
    }


def test_a_load_without_the_gate_is_not_served_until_judged(member: Path) -> None:
    gate.submit_database(member, kind="synth", source="test")
    with CdmTarget.open(member) as target:
        report = LoadReport(kind="test", source="ungated")
        with target.load(report, gate=False) as load:
            load.append(
                "location",
                pa.table({"location_id": [10**6], "city": ["York"]}),
                source_keys=pa.array(["x:1"]),
                source_file="x",
                locators=pa.array(["line 2"]),
                mapping_version="none",
            )
    with duckdb.connect(str(member), read_only=True) as connection:
        reason = gate.serving_refusal(connection, "duckdb")
    assert reason is not None
    assert "after its last quality check" in reason
    gate.submit_database(member, kind="check", source="test")
    with duckdb.connect(str(member), read_only=True) as connection:
        assert gate.serving_refusal(connection, "duckdb") is None


def test_overrides_change_the_verdict_and_carry_their_reason(member: Path) -> None:
    with duckdb.connect(str(member)) as connection:
        connection.execute(
            "UPDATE drug_exposure SET days_supply = 400 WHERE drug_exposure_id = "
            "(SELECT min(drug_exposure_id) FROM drug_exposure)"
        )
        ensure_tables(connection, "duckdb")
        strict = gate.judge(connection, "duckdb", kind="check", source="test")
        assert strict.decision == "accepted_with_warnings"
        set_overrides(connection, "duckdb", [Override(SUPPLY, 1.0, "packs of 400 days exist here")])
        lenient = gate.judge(connection, "duckdb", kind="check", source="test")
        result = next(r for r in lenient.report["results"] if r["check_id"] == SUPPLY)
        assert (result["status"], result["threshold"], result["violating"]) == ("pass", 1.0, 1)
        assert result["threshold_reason"] == "packs of 400 days exist here"
        assert lenient.decision == "accepted"
        set_overrides(connection, "duckdb", [], clear=[SUPPLY])
        assert overrides(connection, "duckdb") == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (Override("no.such.check.here", 1.0, "why"), "unknown check 'no.such.check.here'"),
        (Override(BIRTH, 101.0, "why"), "threshold of " + BIRTH + " is 101.0"),
        (Override(BIRTH, float("nan"), "why"), "is nan"),
        (Override(BIRTH, 1.0, "  "), "has no reason"),
    ],
)
def test_bad_overrides_are_refused_and_nothing_is_stored(
    member: Path, change: Override, message: str
) -> None:
    good = Override("plausibility.range.drug_exposure.refills", 3.0, "why")
    with duckdb.connect(str(member)) as connection:
        with pytest.raises(DataError, match=message.replace(".", r"\.")):
            set_overrides(connection, "duckdb", [good, change])
        assert overrides(connection, "duckdb") == []


def test_a_threshold_file_names_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(
        f"{BIRTH}:\n  threshold: lots\n  reason: typed by hand\n"
        "conformance.required.person.no_such_field:\n  threshold: 1\n  reason: x\n"
        f"{ORPHAN}:\n  threshold: 2\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError) as caught:
        gate.read_threshold_file(path)
    message = caught.value.message
    assert f"{BIRTH}: threshold 'lots' is not a number" in message
    assert "unknown check 'conformance.required.person.no_such_field'" in message
    assert f"{ORPHAN}: expected {{threshold: number, reason: text}}" in message


def test_a_threshold_file_that_is_not_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("a: [unclosed\n", encoding="utf-8")
    with pytest.raises(DataError, match="not valid YAML"):
        gate.read_threshold_file(path)
    path.write_text(f"{BIRTH}:\n  threshold: 2.5\n  reason: keyed by hand\n", encoding="utf-8")
    assert gate.read_threshold_file(path) == [Override(BIRTH, 2.5, "keyed by hand")]


def test_the_hub_status_holds_statuses_and_percentages_only(member: Path) -> None:
    with duckdb.connect(str(member)) as connection:
        connection.execute("UPDATE person SET year_of_birth = 2999 WHERE person_id <= 3")
    verdict = gate.submit_database(member, kind="synth", source="test")
    birth = next(r for r in verdict.report["results"] if r["check_id"] == BIRTH)
    assert [e["id"] for e in birth["examples"]] == [1, 2, 3]
    with duckdb.connect(str(member), read_only=True) as connection:
        status = latest_status(connection, "duckdb")
    assert status is not None
    assert set(status) == {"format", "kept", "submission_id", "at", "decision", "counts", "checks"}
    assert all(set(c) == {"check_id", "severity", "status", "percentage"} for c in status["checks"])
    shown = next(c for c in status["checks"] if c["check_id"] == BIRTH)
    assert shown["status"] == "fail"
    assert shown["percentage"] == pytest.approx(100 * 3 / PERSONS)


def test_example_count_is_bounded(member: Path) -> None:
    with (
        duckdb.connect(str(member)) as connection,
        pytest.raises(DataError, match="examples is 101"),
    ):
        gate.judge(connection, "duckdb", kind="check", source="test", examples=101)


def test_a_vocabulary_change_is_not_served_until_judged(member: Path) -> None:
    gate.submit_database(member, kind="synth", source="test")
    with duckdb.connect(str(member)) as connection:
        connection.execute(
            "UPDATE vocabulary SET vocabulary_version = 'v2' WHERE vocabulary_id = 'None'"
        )
        reason = gate.serving_refusal(connection, "duckdb")
    assert reason is not None
    assert "vocabulary changed after its last quality check" in reason
    gate.submit_database(member, kind="check", source="test")
    with duckdb.connect(str(member), read_only=True) as connection:
        assert gate.serving_refusal(connection, "duckdb") is None


def test_a_check_named_twice_is_refused(member: Path) -> None:
    with duckdb.connect(str(member)) as connection:
        with pytest.raises(DataError, match="given more than once"):
            set_overrides(
                connection,
                "duckdb",
                [Override(SUPPLY, 1.0, "a"), Override(SUPPLY, 2.0, "b")],
            )
        assert overrides(connection, "duckdb") == []


def test_a_threshold_file_with_a_key_twice_or_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    entry = f"{SUPPLY}:\n  threshold: 2\n  reason: packs\n"
    path.write_text(entry + entry, encoding="utf-8")
    with pytest.raises(DataError, match="is given twice"):
        gate.read_threshold_file(path)
    path.write_bytes(entry.encode("utf-8") + b"# caf\xe9\n")
    with pytest.raises(DataError, match="is not UTF-8 text"):
        gate.read_threshold_file(path)


def test_a_check_failing_inside_a_duckdb_load_stops_the_load_clearly(member: Path) -> None:
    gate.submit_database(member, kind="synth", source="test")
    before = conditions(member)
    with duckdb.connect(str(member)) as connection:
        # A column of the wrong type, as a hand-edited CDM might have: the checks reading
        # it cannot run, and inside a DuckDB transaction a failed statement ends it.
        connection.execute("ALTER TABLE person ALTER COLUMN year_of_birth TYPE VARCHAR")
    with (
        CdmTarget.open(member) as target,
        pytest.raises(DataError, match="a quality check could not run inside the load"),
    ):
        load_conditions(target, [1], "good")
    assert conditions(member) == before
    # Outside a load each check runs on its own: the broken ones are errors, and the
    # type check names the column.
    verdict = gate.submit_database(member, kind="check", source="test")
    results = {r["check_id"]: r for r in verdict.report["results"]}
    assert results["conformance.type.person.year_of_birth"]["status"] == "fail"
    assert results[BIRTH]["status"] == "error"
    assert verdict.decision == "quarantined"
