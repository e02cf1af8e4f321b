"""Ingestion on a real PostgreSQL server: the same export gives the same CDM as on DuckDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pytest

from accord.cdm import VOCABULARY_TABLES, load_spec
from accord.errors import DataError
from accord.ingest import AttachedCdm, CdmTarget, LoadReport, attach_postgres, ingest_omop_csv
from accord.synth import generate_consortium

PERSONS = 200


@pytest.fixture(scope="module")
def member(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("consortium")
    manifest = generate_consortium(out, members=3, persons_per_member=PERSONS, seed=11)
    (insurer,) = [m for m in manifest.members if m.kind == "insurer"]
    return out / insurer.db_file


@pytest.fixture(scope="module")
def export(member: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every CDM table of the member as an upper-case, comma-separated CSV file."""
    folder = tmp_path_factory.mktemp("export")
    with duckdb.connect(str(member), read_only=True) as con:
        for table in load_spec().tables:
            con.execute(f"COPY {table} TO '{folder / table.upper()}.csv' (HEADER)")
    return folder


@pytest.fixture
def target(postgres_dsn: str, postgres_schema: str) -> Iterator[CdmTarget]:
    opened = CdmTarget.open(postgres_dsn, schema=postgres_schema)
    yield opened
    opened.close()


def sorted_rows(connection: Any, table: str, schema: str | None = None) -> list[tuple[Any, ...]]:
    name = f'"{schema}"."{table}"' if schema else f'"{table}"'
    columns = ", ".join(f'"{c}"' for c in load_spec().table(table).field_names)
    return sorted(
        connection.execute(f"SELECT {columns} FROM {name}").fetchall(),
        key=lambda row: tuple((value is None, str(value)) for value in row),
    )


def ingest(folder: Path, target: CdmTarget) -> LoadReport:
    report = LoadReport(kind="omop", source=str(folder))
    ingest_omop_csv(folder, target, report)
    return report


def test_an_export_loads_into_postgres_with_the_same_rows(
    member: Path, export: Path, target: CdmTarget, postgres_schema: str
) -> None:
    assert target.dialect == "postgres"
    report = ingest(export, target)
    assert report.reject_count == 0
    with duckdb.connect(str(member), read_only=True) as original:
        for table in load_spec().tables:
            expected = sorted_rows(original, table)
            assert sorted_rows(target.connection, table, postgres_schema) == expected, table
            assert report.rows.get(table, 0) == len(expected)
    assert report.rows["person"] == PERSONS
    assert report.vocabulary_version == "Accord starter subset 2025.1"


def test_reloading_into_postgres_adds_nothing(export: Path, target: CdmTarget) -> None:
    first = ingest(export, target)
    again = ingest(export, target)
    assert again.rows_total == 0
    clinical = {t: n for t, n in first.rows.items() if t not in VOCABULARY_TABLES and n}
    assert dict(again.skipped) == clinical
    statuses = target.connection.execute("SELECT status FROM accord_loads").fetchall()
    assert statuses == [("committed",), ("committed",)]


def test_a_failed_load_on_postgres_keeps_nothing(export: Path, target: CdmTarget) -> None:
    def load_then_fail() -> None:
        with target.load(LoadReport(kind="omop", source="x")) as load:
            load.append(
                "location",
                pa.table({"location_id": [1]}),
                source_keys=pa.array(["t:1"]),
                source_file="f",
                locators=pa.array(["line 2"]),
                mapping_version="v",
            )
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        load_then_fail()
    assert target.connection.execute("SELECT count(*) FROM location").fetchone() == (0,)
    assert target.connection.execute("SELECT status FROM accord_loads").fetchall() == [("failed",)]
    assert ingest(export, target).rows["location"] > 0


def test_ids_keys_nulls_and_empty_strings_on_postgres(target: CdmTarget) -> None:
    report = LoadReport(kind="test", source="x")
    with target.load(report) as load:
        ids = load.allocate_ids("location", 3)
        inserted = load.append(
            "location",
            pa.table(
                {
                    "location_id": ids,
                    "city": pa.array(["", None, 'Say "hi", then\nleave']),
                    "latitude": pa.array([51.5, None, -0.1275]),
                }
            ),
            source_keys=pa.array(["t:a", "t:b", "t:c"]),
            source_file="f",
            locators=pa.array(["1", "2", "3"]),
            mapping_version="v",
        )
        assert inserted == 3
        assert load.existing_keys("location", pa.array(["t:b", "t:z"])).to_pylist() == [True, False]
        assert load.allocate_ids("location", 1).tolist() == [4]
    got = target.connection.execute(
        "SELECT location_id, city, latitude FROM location ORDER BY 1"
    ).fetchall()
    assert got == [(1, "", 51.5), (2, None, None), (3, 'Say "hi", then\nleave', -0.1275)]
    provenance = target.connection.execute(
        "SELECT row_id, source_key FROM accord_provenance ORDER BY 1"
    ).fetchall()
    assert provenance == [(1, "t:a"), (2, "t:b"), (3, "t:c")]


def test_a_duplicate_key_from_elsewhere_is_a_data_error(target: CdmTarget) -> None:
    target.connection.execute("INSERT INTO location (location_id) VALUES (1)")

    def load_clash() -> None:
        with target.load(LoadReport(kind="test", source="x")) as load:
            load.append(
                "location",
                pa.table({"location_id": [1]}),
                source_keys=pa.array(["t:1"]),
                source_file="f",
                locators=pa.array(["line 2"]),
                mapping_version="v",
            )

    with pytest.raises(DataError, match=r"cannot load rows into location: .*duplicate key"):
        load_clash()


def test_attach_describes_a_valid_cdm(
    export: Path, target: CdmTarget, postgres_dsn: str, postgres_schema: str
) -> None:
    ingest(export, target)
    attached = attach_postgres(postgres_dsn, postgres_schema)
    assert attached == AttachedCdm(schema=postgres_schema, dsn=postgres_dsn)
    assert attached.database_config() == {
        "engine": "postgres",
        "dsn": postgres_dsn,
        "schema": postgres_schema,
    }
    count = target.connection.execute("SELECT count(*) FROM accord_loads").fetchone()
    assert count == (1,)


def test_attach_names_every_missing_table_and_column(
    postgres_dsn: str, postgres_schema: str
) -> None:
    CdmTarget.open(postgres_dsn, schema=postgres_schema).close()
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f'DROP TABLE "{postgres_schema}".concept_ancestor')
        connection.execute(f'DROP TABLE "{postgres_schema}".cost')
        connection.execute(f'ALTER TABLE "{postgres_schema}".person DROP COLUMN year_of_birth')
    with pytest.raises(DataError) as caught:
        attach_postgres(postgres_dsn, postgres_schema)
    message = str(caught.value)
    assert "missing tables cost, concept_ancestor" in message
    assert "person lacks columns year_of_birth" in message
    assert "not an OMOP CDM v5.4" in message


def test_attach_an_absent_schema_is_a_data_error(postgres_dsn: str) -> None:
    with pytest.raises(DataError, match="schema 'nowhere' does not exist"):
        attach_postgres(postgres_dsn, "nowhere")


def test_a_missing_schema_is_created_only_when_asked(postgres_dsn: str) -> None:
    with pytest.raises(DataError, match="schema 'not_made' does not exist"):
        CdmTarget.open(postgres_dsn, schema="not_made", create=False)


@pytest.mark.parametrize(
    "dsn", ["postgresql://ana:s3cret@127.0.0.1:1/cdm", "host=127.0.0.1 port=1 password=s3cret"]
)
def test_an_unreachable_server_is_a_data_error_without_the_password(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="cannot connect to PostgreSQL") as caught:
        CdmTarget.open(dsn)
    assert "s3cret" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []
