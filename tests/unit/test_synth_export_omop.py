"""A generated member exported as OHDSI CSV files and ingested again is the same CDM.

Every table's row count and an order-independent checksum of its rows must match the
member database exactly: the CSV layout carries every CDM column. The scenario count and
the manifest's figures are checked on the copy as well, so the path a member with an
existing OMOP CDM takes into the consortium is proven against the generator's oracle.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from accord.cdm import VOCABULARY_TABLES, load_spec
from accord.errors import DataError, UserError
from accord.ingest import CdmTarget, LoadReport, ingest_omop_csv
from accord.query.run import run_count
from accord.query.scenarios import trial_recruitment
from accord.synth import ConsortiumManifest, MemberManifest, generate_consortium
from accord.synth.export_omop import export_omop_csv
from accord.vocab import load_starter_vocabulary

PERSONS = 400


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ConsortiumManifest]:
    out = tmp_path_factory.mktemp("consortium")
    return out, generate_consortium(out, members=3, persons_per_member=PERSONS, seed=11)


def checksums(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, str]]:
    """Rows and an order-independent digest of every CDM table."""
    found: dict[str, tuple[int, str]] = {}
    for table in load_spec().tables:
        row = con.execute(
            "SELECT count(*), md5(coalesce(string_agg(CAST(t AS VARCHAR), '|' "
            f"ORDER BY CAST(t AS VARCHAR)), '')) FROM {table} AS t"
        ).fetchone()
        assert row is not None
        found[table] = (int(row[0]), str(row[1]))
    return found


def ingest(folder: Path, database: Path, *, vocabulary: bool = False) -> LoadReport:
    report = LoadReport(kind="omop", source=str(folder))
    with CdmTarget.open(database) as target:
        if vocabulary:
            load_starter_vocabulary(target.connection)
        ingest_omop_csv(folder, target, report)
    return report


@pytest.mark.parametrize(
    ("upper_case", "delimiter", "include_vocabulary"),
    [(True, "\t", True), (False, ",", True), (True, ",", False)],
)
@pytest.mark.parametrize("kind", ["hospital", "clinic", "insurer"])
def test_a_member_round_trips_exactly(
    consortium: tuple[Path, ConsortiumManifest],
    tmp_path: Path,
    kind: str,
    upper_case: bool,
    delimiter: str,
    include_vocabulary: bool,
) -> None:
    root, manifest = consortium
    member = _member(manifest, kind)
    folder = tmp_path / "export"
    rows = export_omop_csv(
        root / member.db_file,
        folder,
        upper_case=upper_case,
        delimiter=delimiter,
        include_vocabulary=include_vocabulary,
    )
    names = sorted(p.name for p in folder.iterdir())
    expected = {t for t in load_spec().tables if include_vocabulary or t not in VOCABULARY_TABLES}
    assert set(rows) == expected
    assert names == sorted(f"{t.upper() if upper_case else t}.csv" for t in expected)
    written = {t: n for t, n in member.rows.items() if n and t in expected}
    assert {t: n for t, n in rows.items() if n} == written

    copy = tmp_path / "copy.duckdb"
    report = ingest(folder, copy, vocabulary=not include_vocabulary)
    assert report.reject_count == 0
    with (
        duckdb.connect(str(root / member.db_file), read_only=True) as original,
        duckdb.connect(str(copy), read_only=True) as con,
    ):
        assert checksums(con) == checksums(original)
        assert run_count(con, trial_recruitment(manifest.as_of), "duckdb") == (
            member.trial_recruitment
        )
        persons = con.execute("SELECT count(*) FROM person").fetchone()
        assert persons == (member.persons,)


def test_files_are_written_as_ohdsi_tools_write_them(
    consortium: tuple[Path, ConsortiumManifest], tmp_path: Path
) -> None:
    root, manifest = consortium
    member = _member(manifest, "hospital")
    export_omop_csv(root / member.db_file, tmp_path)
    header, first = (tmp_path / "PERSON.csv").read_text(encoding="utf-8").splitlines()[:2]
    assert header.split("\t") == list(load_spec().table("person").field_names)
    assert first.split("\t")[0] == "1"
    death = (tmp_path / "DEATH.csv").read_text(encoding="utf-8").splitlines()[1].split("\t")
    assert len(death[1]) == 10
    assert death[1][4] == "-"
    assert death[1][7] == "-"
    assert not list(tmp_path.glob(".*")), "no staging directory is left behind"


def test_exporting_twice_gives_the_same_files(
    consortium: tuple[Path, ConsortiumManifest], tmp_path: Path
) -> None:
    root, manifest = consortium
    database = root / _member(manifest, "clinic").db_file
    export_omop_csv(database, tmp_path / "a")
    export_omop_csv(database, tmp_path / "b")
    for path in (tmp_path / "a").iterdir():
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes(), path.name


def test_a_new_export_replaces_the_previous_one(
    consortium: tuple[Path, ConsortiumManifest], tmp_path: Path
) -> None:
    root, manifest = consortium
    database = root / _member(manifest, "clinic").db_file
    export_omop_csv(database, tmp_path, upper_case=True)
    (tmp_path / "notes.txt").write_text("kept", encoding="utf-8")
    export_omop_csv(database, tmp_path, upper_case=False, include_vocabulary=False)
    assert not (tmp_path / "PERSON.csv").exists()
    assert not (tmp_path / "concept.csv").exists()
    assert (tmp_path / "person.csv").exists()
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "kept"


def test_text_a_tab_separated_file_cannot_carry_is_refused_before_writing(
    consortium: tuple[Path, ConsortiumManifest], tmp_path: Path
) -> None:
    root, manifest = consortium
    database = tmp_path / "member.duckdb"
    shutil.copy(root / _member(manifest, "hospital").db_file, database)
    with duckdb.connect(str(database)) as con:
        con.execute("UPDATE person SET person_source_value = 'a\tb' WHERE person_id = 3")
    out = tmp_path / "export"
    with pytest.raises(DataError, match=r"person\.person_source_value has 1 values"):
        export_omop_csv(database, out)
    assert not out.exists() or not list(out.iterdir())
    rows = export_omop_csv(database, out, delimiter=",")
    assert rows["person"] == PERSONS


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="delimiter"):
        export_omop_csv(tmp_path / "x.duckdb", tmp_path, delimiter='"')
    with pytest.raises(DataError, match="does not exist"):
        export_omop_csv(tmp_path / "missing.duckdb", tmp_path / "out")
    (tmp_path / "junk.duckdb").write_text("not a database", encoding="utf-8")
    with pytest.raises(DataError, match="cannot open"):
        export_omop_csv(tmp_path / "junk.duckdb", tmp_path / "out")


def _member(manifest: ConsortiumManifest, kind: str) -> MemberManifest:
    (member,) = [m for m in manifest.members if m.kind == kind]
    return member
