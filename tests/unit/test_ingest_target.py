"""The shared loading framework on DuckDB: ids, casts, idempotence, rollback, provenance."""

from __future__ import annotations

import doctest
import errno
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import accord.ingest.target
from accord.errors import DataError
from accord.ingest import CdmTarget, Load, LoadReport
from accord.ingest.target import redact_dsn


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "member.duckdb"


@pytest.fixture
def target(path: Path) -> Iterator[CdmTarget]:
    opened = CdmTarget.open(path, gate=False)
    yield opened
    opened.close()


def new_report() -> LoadReport:
    return LoadReport(kind="test", source="unit test")


def people(ids: list[int], *, born: int = 1970) -> pa.Table:
    return pa.table(
        {
            "person_id": pa.array(ids, pa.int64()),
            "gender_concept_id": pa.array([8507] * len(ids), pa.int64()),
            "year_of_birth": pa.array([str(born)] * len(ids)),
            "race_concept_id": pa.array([0] * len(ids), pa.int64()),
            "ethnicity_concept_id": pa.array([0] * len(ids), pa.int64()),
        }
    )


def append_people(load: Load, ids: list[int], **kwargs: Any) -> int:
    return load.append(
        "person",
        people(ids, **kwargs),
        source_keys=pa.array([f"test:person/{i}" for i in ids]),
        source_file="people.csv",
        locators=pa.array([f"line {i + 1}" for i in ids]),
        mapping_version="test-1",
    )


def load_then_raise(target: CdmTarget, error: BaseException, ids: tuple[int, ...] = (2,)) -> None:
    """Append some people and allocate ids in one load, then fail with ``error``."""
    with target.load(new_report()) as load:
        append_people(load, list(ids))
        load.allocate_ids("person", 5)
        raise error


def rows(target: CdmTarget, sql: str) -> list[tuple[Any, ...]]:
    return list(target.connection.execute(sql).fetchall())


def test_docstring_examples() -> None:
    assert doctest.testmod(accord.ingest.target).failed == 0


def test_open_creates_the_cdm_and_bookkeeping_tables(target: CdmTarget, path: Path) -> None:
    assert path.exists()
    assert target.dialect == "duckdb"
    names = {r[0] for r in rows(target, "SELECT table_name FROM information_schema.tables")}
    assert {"person", "concept", "cost", "accord_provenance", "accord_loads"} <= names


def test_opening_again_keeps_the_data(target: CdmTarget, path: Path) -> None:
    with target.load(new_report()) as load:
        append_people(load, [1, 2])
    target.close()
    with CdmTarget.open(path, create=False) as again:
        assert rows(again, "SELECT count(*) FROM person") == [(2,)]


def test_a_missing_database_is_not_created_unless_asked(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"database .*absent\.duckdb does not exist"):
        CdmTarget.open(tmp_path / "absent.duckdb", create=False)
    assert not (tmp_path / "absent.duckdb").exists()


def test_a_missing_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"folder .* does not exist"):
        CdmTarget.open(tmp_path / "no" / "member.duckdb")


def test_a_file_that_is_not_duckdb_is_a_data_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.duckdb"
    bogus.write_text("not a database")
    with pytest.raises(DataError, match="cannot open DuckDB database"):
        CdmTarget.open(bogus)
    assert bogus.read_text() == "not a database"


def test_a_schema_is_created_and_used(path: Path) -> None:
    with CdmTarget.open(path, schema="cdm", gate=False) as target:
        with target.load(new_report()) as load:
            append_people(load, [1])
        assert rows(target, 'SELECT count(*) FROM "cdm"."person"') == [(1,)]
        assert rows(target, "SELECT count(*) FROM person") == [(1,)]


def test_a_bad_schema_name_is_refused(path: Path) -> None:
    with pytest.raises(DataError, match="schema name"):
        CdmTarget.open(path, schema='x"; DROP TABLE person; --')


def test_allocated_ids_rise_within_and_across_loads(target: CdmTarget) -> None:
    with target.load(new_report()) as load:
        first = load.allocate_ids("person", 3)
        second = load.allocate_ids("person", 2)
        assert first.tolist() == [1, 2, 3]
        assert second.tolist() == [4, 5]
        assert first.dtype == np.int64
        append_people(load, [10, 11])
        assert load.allocate_ids("person", 1).tolist() == [12]
        assert load.allocate_ids("person", 0).tolist() == []
    with target.load(new_report()) as load:
        assert load.allocate_ids("person", 2).tolist() == [12, 13]


def test_allocating_past_the_32_bit_range_is_refused(target: CdmTarget) -> None:
    with target.load(new_report()) as load:
        append_people(load, [2**31 - 2])
        with pytest.raises(DataError, match="would pass 2,147,483,647"):
            load.allocate_ids("person", 2)


def test_tables_without_an_integer_key_have_no_ids_to_allocate(target: CdmTarget) -> None:
    with target.load(new_report()) as load, pytest.raises(DataError, match="integer primary key"):
        load.allocate_ids("concept_ancestor", 1)


def test_append_casts_columns_and_fills_absent_ones_with_null(target: CdmTarget) -> None:
    with target.load(new_report()) as load:
        ids = load.allocate_ids("condition_occurrence", 2)
        inserted = load.append(
            "condition_occurrence",
            pa.table(
                {
                    "condition_occurrence_id": ids,
                    "person_id": pa.array([1, 2], pa.int64()),
                    "condition_concept_id": pa.array(["201826", "320128"]),
                    "condition_start_date": pa.array(["2020-01-31", "2021-02-28"]),
                    "condition_type_concept_id": pa.array([32817, 32817], pa.int64()),
                }
            ),
            source_keys=pa.array(["t:c1", "t:c2"]),
            source_file="conditions.csv",
            locators=pa.array(["line 2", "line 3"]),
            mapping_version="test-1",
        )
    assert inserted == 2
    got = rows(
        target,
        "SELECT condition_concept_id, condition_start_date, condition_end_date, "
        "condition_source_value FROM condition_occurrence ORDER BY 1",
    )
    assert got == [(201826, date(2020, 1, 31), None, None), (320128, date(2021, 2, 28), None, None)]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"person_id": [1]}), "lack required columns gender_concept_id, year_of_birth"),
        (
            people([1]).append_column("shoe_size", pa.array([42])),
            "columns not in the CDM: shoe_size",
        ),
        (people([1]).set_column(2, "year_of_birth", pa.array(["nineteen"])), "year_of_birth"),
        (
            people([1]).set_column(2, "year_of_birth", pa.array([None], pa.string())),
            "person.year_of_birth is required but 1 of 1 rows have no value",
        ),
    ],
)
def test_rows_that_do_not_fit_the_table_are_a_data_error(
    target: CdmTarget, table: pa.Table, message: str
) -> None:
    with target.load(new_report()) as load, pytest.raises(DataError, match=message):
        load.append(
            "person",
            table,
            source_keys=pa.array(["k"]),
            source_file="f",
            locators=pa.array(["line 2"]),
            mapping_version="v",
        )


def test_an_unknown_table_is_a_data_error(target: CdmTarget) -> None:
    with target.load(new_report()) as load, pytest.raises(DataError, match="unknown OMOP CDM"):
        load.allocate_ids("patients", 1)


def test_repeated_source_keys_in_one_append_are_a_data_error(target: CdmTarget) -> None:
    with target.load(new_report()) as load, pytest.raises(DataError, match="repeat source keys"):
        load.append(
            "person",
            people([1, 2]),
            source_keys=pa.array(["same", "same"]),
            source_file="f",
            locators=pa.array(["a", "b"]),
            mapping_version="v",
        )


def test_keys_and_locators_must_match_the_rows(target: CdmTarget) -> None:
    with target.load(new_report()) as load, pytest.raises(ValueError, match="2 entries for 1"):
        load.append(
            "person",
            people([1]),
            source_keys=pa.array(["a", "b"]),
            source_file="f",
            locators=pa.array(["a"]),
            mapping_version="v",
        )


def test_reloading_the_same_rows_adds_nothing(target: CdmTarget) -> None:
    with target.load(new_report()) as load:
        assert append_people(load, [1, 2, 3]) == 3
    again = new_report()
    with target.load(again) as load:
        assert append_people(load, [1, 2, 3]) == 0
    assert rows(target, "SELECT count(*) FROM person") == [(3,)]
    assert again.to_json()["skipped_existing"] == {"person": 3}
    assert again.to_json()["rows"] == {"person": 0}


def test_an_incremental_load_adds_only_new_rows(target: CdmTarget) -> None:
    with target.load(new_report()) as load:
        append_people(load, [1, 2])
    report = new_report()
    with target.load(report) as load:
        assert append_people(load, [1, 2, 3, 4], born=1999) == 2
        mask = load.existing_keys("person", pa.array(["test:person/2", "test:person/9"]))
        assert mask.to_pylist() == [True, False]
    got = rows(target, "SELECT person_id, year_of_birth FROM person ORDER BY 1")
    # The first load's rows are kept as they were: first load wins.
    assert got == [(1, 1970), (2, 1970), (3, 1999), (4, 1999)]
    assert report.to_json()["rows"] == {"person": 2}
    assert report.to_json()["skipped_existing"] == {"person": 2}


def test_keys_loaded_here_tells_this_load_from_earlier_ones(target: CdmTarget) -> None:
    with target.load(new_report()) as load:
        append_people(load, [1])
    with target.load(new_report()) as load:
        append_people(load, [2])
        keys = pa.array(["test:person/1", "test:person/2", "test:person/3"])
        assert load.keys_loaded_here("person", keys).to_pylist() == [False, True, False]
        assert load.existing_keys("person", keys).to_pylist() == [True, True, False]
        assert load.existing_keys("person", pa.array([], pa.string())).to_pylist() == []


def test_provenance_and_the_load_are_recorded(target: CdmTarget) -> None:
    report = new_report()
    report.vocabulary_version = "v5 test"
    with target.load(report) as load:
        append_people(load, [7, 8])
        load_id = load.load_id
    got = rows(
        target,
        "SELECT cdm_table, row_id, source_key, source_file, locator, mapping_version, load_id "
        "FROM accord_provenance ORDER BY row_id",
    )
    assert got == [
        ("person", 7, "test:person/7", "people.csv", "line 8", "test-1", load_id),
        ("person", 8, "test:person/8", "people.csv", "line 9", "test-1", load_id),
    ]
    ((kind, source, status, vocabulary, stored, started, finished),) = rows(
        target,
        "SELECT kind, source, status, vocabulary_version, CAST(report AS VARCHAR), "
        "started_at, finished_at FROM accord_loads",
    )
    assert (kind, source, status, vocabulary) == ("test", "unit test", "committed", "v5 test")
    assert finished >= started
    assert '"person": 2' in stored


def test_an_exception_rolls_the_whole_load_back(target: CdmTarget) -> None:
    with target.load(new_report()) as load:
        append_people(load, [1])
    with pytest.raises(RuntimeError, match="boom"):
        load_then_raise(target, RuntimeError("boom"), ids=(2, 3))
    assert rows(target, "SELECT person_id FROM person") == [(1,)]
    assert rows(target, "SELECT count(*) FROM accord_provenance") == [(1,)]
    assert rows(target, "SELECT status FROM accord_loads ORDER BY started_at") == [
        ("committed",),
        ("failed",),
    ]
    with target.load(new_report()) as load:
        assert load.allocate_ids("person", 1).tolist() == [2]


def test_a_disk_fault_becomes_a_data_error_naming_the_file(target: CdmTarget) -> None:
    with target.load(new_report()) as load:
        append_people(load, [1])
    full = OSError(errno.ENOSPC, "No space left on device", "export/PERSON.csv")
    with pytest.raises(
        DataError, match=r"rolled back: export/PERSON\.csv: No space left"
    ) as caught:
        load_then_raise(target, full)
    assert caught.value.hint
    assert rows(target, "SELECT count(*) FROM person") == [(1,)]


def test_a_new_database_is_removed_if_its_first_load_fails(path: Path) -> None:
    target = CdmTarget.open(path, gate=False)
    full = OSError(errno.ENOSPC, "No space left on device", str(path))
    with pytest.raises(DataError, match="No space left on device"):
        load_then_raise(target, full)
    assert not path.exists()
    assert not path.with_name(path.name + ".wal").exists()
    with pytest.raises(DataError, match="is closed"):
        target.load(new_report()).__enter__()


def test_a_database_that_had_a_committed_load_is_kept(path: Path) -> None:
    with CdmTarget.open(path, gate=False) as target:
        with target.load(new_report()) as load:
            append_people(load, [1])
        with pytest.raises(KeyboardInterrupt):
            load_then_raise(target, KeyboardInterrupt())
    assert duckdb.connect(str(path)).execute("SELECT count(*) FROM person").fetchone() == (1,)


def test_an_existing_database_is_kept_if_a_load_fails(path: Path) -> None:
    CdmTarget.open(path).close()
    with CdmTarget.open(path, gate=False) as target:
        with pytest.raises(RuntimeError):
            load_then_raise(target, RuntimeError("boom"))
        assert rows(target, "SELECT status FROM accord_loads") == [("failed",)]
    assert path.exists()


def test_a_new_database_is_removed_if_work_before_any_load_fails(path: Path) -> None:
    with pytest.raises(DataError), CdmTarget.open(path):
        raise DataError("the source folder is missing")
    assert not path.exists()


def test_a_load_cannot_be_used_after_it_ends(target: CdmTarget) -> None:
    with target.load(new_report()) as load:
        pass
    with pytest.raises(RuntimeError, match="has ended"):
        load.allocate_ids("person", 1)


def test_loads_do_not_nest(target: CdmTarget) -> None:
    with target.load(new_report()), pytest.raises(RuntimeError, match="already running"):
        target.load(new_report()).__enter__()


def test_vocabulary_rows_load_without_provenance(target: CdmTarget) -> None:
    assert not target.has_rows("vocabulary")
    assert target.vocabulary_version() is None
    report = new_report()
    with target.load(report) as load:
        inserted = load.append_vocabulary(
            "vocabulary",
            pa.table(
                {
                    "vocabulary_id": ["None"],
                    "vocabulary_name": ["OMOP Standardized Vocabularies"],
                    "vocabulary_version": ["v5.0 31-AUG-23"],
                    "vocabulary_concept_id": [44819096],
                }
            ),
        )
        with pytest.raises(ValueError, match="not a vocabulary table"):
            load.append_vocabulary("person", people([1]))
    assert inserted == 1
    assert target.has_rows("vocabulary")
    assert target.vocabulary_version() == "v5.0 31-AUG-23"
    assert rows(target, "SELECT count(*) FROM accord_provenance") == [(0,)]
    assert report.to_json()["rows"] == {"vocabulary": 1}


def test_a_primary_key_clash_with_rows_from_elsewhere_is_a_data_error(target: CdmTarget) -> None:
    target.connection.execute(
        "INSERT INTO person VALUES (1, 8507, 1970" + ", NULL" * 2 + ", NULL"
        ", 0, 0" + ", NULL" * 10 + ")"
    )
    with (
        pytest.raises(DataError, match="cannot load rows into person"),
        target.load(new_report()) as load,
    ):
        append_people(load, [1])


def test_passwords_are_redacted_from_dsns() -> None:
    assert redact_dsn("postgresql://ana:s3cret@db:5432/cdm") == "postgresql://ana:***@db:5432/cdm"
    assert (
        redact_dsn("postgresql://db/cdm?password=s3cret&x=1")
        == "postgresql://db/cdm?password=***&x=1"
    )
    assert redact_dsn("postgresql://ana@db/cdm") == "postgresql://ana@db/cdm"
