"""Importing an Athena download: layouts, replacement, rollback, the recorded version."""

from __future__ import annotations

import csv
import doctest
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import pytest

from accord.cdm import create_cdm
from accord.errors import DataError
from accord.vocab import athena
from accord.vocab.athena import (
    VERSION_TABLE,
    current_vocabulary_version,
    import_vocabulary,
    vocabulary_layouts,
)
from accord.vocab.starter import load_starter_vocabulary, read_athena_batches, table_layout

Rows = Mapping[str, Sequence[Sequence[str]]]

HEADERS = {layout.name: layout.schema.names for layout in vocabulary_layouts()}
START, END = "19700101", "20991231"


def table(text: str) -> list[list[str]]:
    """Rows written one a line with ``|`` between fields, as the tests read best."""
    return [line.split("|") for line in text.strip().splitlines()]


CONCEPTS = """
0|No matching concept|Metadata|None|Undefined||No matching concept
8507|MALE|Gender|Gender|Gender|S|M
320128|Essential hypertension|Condition|SNOMED|Clinical Finding|S|59621000
35207668|Essential (primary) hypertension|Condition|ICD10CM|4-char billing||I10
44054006|Diabetes mellitus type 2, "adult onset"|Condition|SNOMED|Clinical Finding|S|44054006
44818977|Maps to (OMOP)|Metadata|Relationship|Relationship||OMOP generated
"""
EXTRA_CONCEPT = "4329847|Myocardial infarction|Condition|SNOMED|Clinical Finding|S|22298006"


def release(version: str = "v5.0 30-AUG-24", *, extra_concept: bool = False) -> dict[str, Any]:
    """A tiny but complete and consistent Athena download, as rows of text per table.

    A concept name holds a comma and quotes, which a comma-separated writer must quote.
    """
    concepts = table(CONCEPTS + (EXTRA_CONCEPT if extra_concept else ""))
    return {
        "concept": [[*row, START, END, ""] for row in concepts],
        "vocabulary": table(f"""
None|OMOP Standardized Vocabularies|OMOP generated|{version}|44819096
SNOMED|SNOMED CT|http://snomed.info|2024-03-01|44819097
ICD10CM|ICD-10-CM|CDC|ICD10CM FY2024|44819098
Gender|OMOP Gender|OMOP generated||44819217
Relationship|OMOP Relationship|OMOP generated||44819235
"""),
        "domain": table("Condition|Condition|19\nGender|Gender|2\nMetadata|Metadata|7"),
        "concept_class": table("""
Clinical Finding|Clinical Finding|44819017
4-char billing|4-char billing code|44819059
Gender|Gender|44819216
Relationship|Relationship|44819234
Undefined|Undefined|0
"""),
        "relationship": table(
            "Maps to|Non-standard to Standard map (OMOP)|0|0|Mapped from|44818977"
        ),
        "concept_relationship": [["35207668", "320128", "Maps to", START, END, ""]],
        "concept_ancestor": [["320128", "320128", "0", "0"]],
        "concept_synonym": [["320128", "High blood pressure", "4180186"]],
    }


def write_release(
    directory: Path,
    rows: Rows,
    *,
    delimiter: str = "\t",
    upper: bool = True,
    dashed_dates: bool = False,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for table, records in rows.items():
        name = f"{table.upper()}.csv" if upper else f"{table}.csv"
        with (directory / name).open("w", encoding="utf-8", newline="") as file:
            if delimiter == "\t":
                # Athena's own files: tab-separated and never quoted.
                file.write("\t".join(HEADERS[table]) + "\n")
                for record in records:
                    file.write("\t".join(_dates(record, dashed_dates)) + "\n")
            else:
                writer = csv.writer(file, delimiter=",", lineterminator="\n")
                writer.writerow(HEADERS[table])
                writer.writerows(_dates(record, dashed_dates) for record in records)
    return directory


def _dates(record: Sequence[str], dashed: bool) -> list[str]:
    if not dashed:
        return list(record)
    return [f"{v[:4]}-{v[4:6]}-{v[6:]}" if v in (START, END) else v for v in record]


def snapshot(con: Any, schema: str | None = None) -> dict[str, list[tuple[Any, ...]]]:
    prefix = f'"{schema}".' if schema else ""
    tables = [*HEADERS, VERSION_TABLE]
    return {
        table: sorted(con.execute(f"SELECT * FROM {prefix}{table}").fetchall(), key=repr)
        for table in tables
    }


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    create_cdm(connection, "duckdb")
    yield connection
    connection.close()


def test_tab_separated_upper_case_download_is_loaded(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    rows = release()
    result = import_vocabulary(write_release(tmp_path, rows), con, "duckdb")
    assert dict(result.rows) == {table: len(records) for table, records in rows.items()}
    assert result.version == "v5.0 30-AUG-24"
    assert result.missing_files == ()
    concept = con.execute(
        "SELECT concept_name, valid_start_date, valid_end_date, invalid_reason, standard_concept "
        "FROM concept WHERE concept_id = 44054006"
    ).fetchone()
    assert concept == (
        'Diabetes mellitus type 2, "adult onset"',
        date(1970, 1, 1),
        date(2099, 12, 31),
        None,
        "S",
    )
    synonym = con.execute("SELECT * FROM concept_synonym").fetchall()
    assert synonym == [(320128, "High blood pressure", 4180186)]


def test_comma_separated_lower_case_dashed_dates_load_the_same_rows(tmp_path: Path) -> None:
    tab, comma = duckdb.connect(), duckdb.connect()
    import_vocabulary(write_release(tmp_path / "tab", release()), tab, "duckdb")
    directory = write_release(
        tmp_path / "comma", release(), delimiter=",", upper=False, dashed_dates=True
    )
    result = import_vocabulary(directory, comma, "duckdb")
    assert result.version == "v5.0 30-AUG-24"
    tab_rows, comma_rows = snapshot(tab), snapshot(comma)
    for table in HEADERS:
        assert comma_rows[table] == tab_rows[table], table


def test_a_second_import_replaces_the_first(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    load_starter_vocabulary(con)
    import_vocabulary(write_release(tmp_path / "one", release("v1")), con, "duckdb")
    newer = release("v2", extra_concept=True)
    newer["concept_relationship"] = []
    result = import_vocabulary(write_release(tmp_path / "two", newer), con, "duckdb")
    assert result.version == "v2"
    assert con.execute("SELECT count(*) FROM concept").fetchone() == (len(newer["concept"]),)
    assert con.execute("SELECT count(*) FROM concept_relationship").fetchone() == (0,)
    assert current_vocabulary_version(con) == "v2"
    assert con.execute(f"SELECT count(*) FROM {VERSION_TABLE}").fetchone() == (1,)


def test_files_left_out_leave_their_tables_empty(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    import_vocabulary(write_release(tmp_path / "full", release()), con, "duckdb")
    only_concepts = {"concept": release()["concept"]}
    result = import_vocabulary(write_release(tmp_path / "part", only_concepts), con, "duckdb")
    assert set(result.missing_files) == set(HEADERS) - {"concept"}
    assert con.execute("SELECT count(*) FROM concept_ancestor").fetchone() == (0,)
    # Without the VOCABULARY table there is no release to name.
    assert result.version == "unknown"


def test_version_without_a_none_row_lists_each_vocabulary(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    rows = release()
    rows["vocabulary"] = [r for r in rows["vocabulary"] if r[0] != "None"]
    result = import_vocabulary(write_release(tmp_path, rows), con, "duckdb")
    assert result.version == "ICD10CM ICD10CM FY2024; SNOMED 2024-03-01"
    assert current_vocabulary_version(con) == result.version


def test_tables_are_created_when_absent_and_progress_is_reported(tmp_path: Path) -> None:
    con = duckdb.connect()
    seen: list[tuple[str, int]] = []
    import_vocabulary(
        write_release(tmp_path, release()), con, "duckdb", progress=lambda t, n: seen.append((t, n))
    )
    assert ("concept", 6) in seen
    assert seen[0][0] == "domain"  # referenced tables first


def test_current_version_falls_back_to_the_vocabulary_table(
    con: duckdb.DuckDBPyConnection,
) -> None:
    with pytest.raises(DataError, match="no vocabulary"):
        current_vocabulary_version(con)
    load_starter_vocabulary(con)
    assert current_vocabulary_version(con) == "Accord starter subset 2025.1"


def _break(directory: Path, name: str, line: int, text: str | bytes) -> None:
    path = directory / name
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = text if isinstance(text, bytes) else text.encode()
    path.write_bytes(b"\n".join(lines))


BROKEN = [
    pytest.param(
        "CONCEPT_RELATIONSHIP.csv",
        2,
        "35207668\t320128\tMaps to\t19700101",
        r"CONCEPT_RELATIONSHIP\.csv, line 2: expected 6 tab-separated fields, found 4",
        id="field-count",
    ),
    pytest.param(
        "CONCEPT.csv",
        4,
        "35207668\tX\tCondition\tICD10CM\tc\t\tI10\t20240231\t20991231\t",
        r"CONCEPT\.csv, line 4: valid_start_date is not a date .*YYYYMMDD",
        id="date",
    ),
    pytest.param(
        "CONCEPT_ANCESTOR.csv",
        2,
        "320128\tabc\t0\t0",
        r"CONCEPT_ANCESTOR\.csv, line 2: descendant_concept_id is not a whole number",
        id="number",
    ),
    pytest.param(
        "CONCEPT_SYNONYM.csv",
        2,
        "320128\tHigh blood pressure \xe9\t4180186".encode("latin-1"),
        r"CONCEPT_SYNONYM\.csv, line 2: not UTF-8",
        id="encoding",
    ),
    pytest.param(
        "DOMAIN.csv",
        3,
        "Gender\t\t2",
        r"DOMAIN\.csv, line 3: domain_name is empty .*expected a value",
        id="required",
    ),
    pytest.param(
        "VOCABULARY.csv",
        1,
        "vocabulary_id\tvocabulary_name",
        r"VOCABULARY\.csv, line 1: .*lacks columns vocabulary_reference",
        id="header",
    ),
]


@pytest.mark.parametrize(("name", "line", "text", "message"), BROKEN)
def test_a_broken_file_changes_nothing_and_names_file_and_line(
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    name: str,
    line: int,
    text: str | bytes,
    message: str,
) -> None:
    import_vocabulary(write_release(tmp_path / "good", release("v1")), con, "duckdb")
    before = snapshot(con)
    broken = write_release(tmp_path / "bad", release("v2", extra_concept=True))
    _break(broken, name, line, text)
    with pytest.raises(DataError, match=message):
        import_vocabulary(broken, con, "duckdb")
    assert snapshot(con) == before
    assert current_vocabulary_version(con) == "v1"


def test_a_download_without_concept_is_refused(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    rows = release()
    del rows["concept"]
    with pytest.raises(DataError, match=r"has no CONCEPT\.csv"):
        import_vocabulary(write_release(tmp_path, rows), con, "duckdb")
    with pytest.raises(DataError, match="does not exist"):
        import_vocabulary(tmp_path / "nowhere", con, "duckdb")


def test_a_duplicate_key_rolls_back(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    import_vocabulary(write_release(tmp_path / "good", release("v1")), con, "duckdb")
    before = snapshot(con)
    rows = release("v2")
    rows["domain"] = [*rows["domain"], ["Condition", "Again", "19"]]
    with pytest.raises(DataError, match=r"DOMAIN\.csv into domain"):
        import_vocabulary(write_release(tmp_path / "bad", rows), con, "duckdb")
    assert snapshot(con) == before


def test_line_numbers_hold_across_batches(tmp_path: Path) -> None:
    path = tmp_path / "CONCEPT_ANCESTOR.csv"
    lines = ["\t".join(HEADERS["concept_ancestor"])]
    lines += [f"{i}\t{i}\t0\t0" for i in range(1, 5000)]
    lines[3210] = "1\t1\t0\tzero"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    layout = table_layout("concept_ancestor")
    with pytest.raises(DataError, match="line 3211: max_levels_of_separation"):
        for _ in read_athena_batches(path, layout, block_size=4096):
            pass
    lines[3210] = "1\t1\t0\t0"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    batches = list(read_athena_batches(path, layout, block_size=4096))
    assert len(batches) > 1
    assert sum(batch.num_rows for batch in batches) == 4999


def test_a_blank_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "DOMAIN.csv"
    path.write_text("domain_id\tdomain_name\tdomain_concept_id\nA\tA\t1\n\nB\tB\t2\n")
    with pytest.raises(DataError, match="line 3: the line is blank"):
        list(read_athena_batches(path, table_layout("domain")))


@pytest.mark.postgres
def test_postgres_import_replaces_in_place_and_rolls_back(
    postgres_dsn: str, postgres_schema: str, tmp_path: Path
) -> None:
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as pg:
        create_cdm(pg, "postgres", schema=postgres_schema)
        first = import_vocabulary(
            write_release(tmp_path / "one", release("v1")), pg, "postgres", schema=postgres_schema
        )
        assert first.rows["concept"] == 6
        # A clinical row refers to a concept by foreign key: a new release keeping that
        # concept must still import.
        pg.execute(
            f'INSERT INTO "{postgres_schema}".person (person_id, gender_concept_id, '
            "year_of_birth, race_concept_id, ethnicity_concept_id) VALUES (1, 8507, 1970, 0, 0)"
        )
        second = release("v2", extra_concept=True)
        second["concept"][1][1] = "Male"
        result = import_vocabulary(
            write_release(tmp_path / "two", second, delimiter=",", upper=False),
            pg,
            "postgres",
            schema=postgres_schema,
        )
        assert result.version == "v2"
        assert current_vocabulary_version(pg, schema=postgres_schema) == "v2"

        duck = duckdb.connect()
        import_vocabulary(write_release(tmp_path / "duck", second), duck, "duckdb")
        assert snapshot(pg, postgres_schema) | {VERSION_TABLE: []} == snapshot(duck) | {
            VERSION_TABLE: []
        }

        before = snapshot(pg, postgres_schema)
        broken = write_release(tmp_path / "bad", release("v3"))
        _break(broken, "CONCEPT_ANCESTOR.csv", 2, "320128\t320128\t0")
        with pytest.raises(DataError, match=r"CONCEPT_ANCESTOR\.csv, line 2"):
            import_vocabulary(broken, pg, "postgres", schema=postgres_schema)
        assert snapshot(pg, postgres_schema) == before

        # Dropping a concept a person still refers to is refused, and changes nothing.
        dropped = release("v4")
        dropped["concept"] = [row for row in dropped["concept"] if row[0] != "8507"]
        with pytest.raises(DataError, match="cannot load the vocabulary tables"):
            import_vocabulary(
                write_release(tmp_path / "drop", dropped), pg, "postgres", schema=postgres_schema
            )
        assert snapshot(pg, postgres_schema) == before


@pytest.mark.parametrize("module", [athena])
def test_docstring_examples(module: ModuleType) -> None:
    assert doctest.testmod(module).failed == 0
