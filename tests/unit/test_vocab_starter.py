"""The starter vocabulary: loads into a CDM, is internally consistent, names real concepts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from accord.cdm import create_cdm
from accord.errors import DataError
from accord.vocab import STARTER_VOCABULARY_VERSION, concepts, load_starter_vocabulary
from accord.vocab.starter import (
    VOCABULARY_FILES,
    read_athena_table,
    starter_directory,
    starter_tables,
)


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    create_cdm(connection, "duckdb")
    load_starter_vocabulary(connection)
    yield connection
    connection.close()


def scalar(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def named_concepts() -> dict[str, int]:
    return {
        name: value
        for name, value in vars(concepts).items()
        if name.isupper() and isinstance(value, int) and name != "LOCAL_CONCEPT_ID_START"
    }


def test_load_returns_rows_loaded_and_every_file_arrives() -> None:
    connection = duckdb.connect()
    create_cdm(connection, "duckdb")
    loaded = load_starter_vocabulary(connection)
    expected = 0
    for table, name in VOCABULARY_FILES.items():
        lines = (starter_directory() / name).read_text(encoding="utf-8").splitlines()
        assert scalar(connection, f"SELECT count(*) FROM {table}") == len(lines) - 1
        expected += len(lines) - 1
    assert loaded == expected


def test_every_named_concept_is_in_the_concept_table(con: duckdb.DuckDBPyConnection) -> None:
    ids = set(starter_tables()["concept"].column("concept_id").to_pylist())
    missing = {name: value for name, value in named_concepts().items() if value not in ids}
    assert not missing


def test_every_maps_to_target_is_standard(con: duckdb.DuckDBPyConnection) -> None:
    bad = con.execute(
        """SELECT r.concept_id_1, r.concept_id_2 FROM concept_relationship r
           JOIN concept c ON c.concept_id = r.concept_id_2
           WHERE r.relationship_id = 'Maps to' AND c.standard_concept IS DISTINCT FROM 'S'"""
    ).fetchall()
    assert bad == []


def test_every_source_code_maps_to_one_standard_concept(con: duckdb.DuckDBPyConnection) -> None:
    counts = con.execute(
        """SELECT c.concept_code, count(r.concept_id_2) FROM concept c
           LEFT JOIN concept_relationship r
             ON r.concept_id_1 = c.concept_id AND r.relationship_id = 'Maps to'
           WHERE c.vocabulary_id IN ('ICD10CM', 'ICD9CM') GROUP BY 1"""
    ).fetchall()
    assert counts
    assert all(count == 1 for _, count in counts)


def test_relationships_and_ancestors_point_at_concepts(con: duckdb.DuckDBPyConnection) -> None:
    dangling = scalar(
        con,
        """SELECT count(*) FROM (
             SELECT concept_id_1 AS id FROM concept_relationship
             UNION ALL SELECT concept_id_2 FROM concept_relationship
             UNION ALL SELECT ancestor_concept_id FROM concept_ancestor
             UNION ALL SELECT descendant_concept_id FROM concept_ancestor
             UNION ALL SELECT vocabulary_concept_id FROM vocabulary
             UNION ALL SELECT domain_concept_id FROM domain
           ) refs WHERE id NOT IN (SELECT concept_id FROM concept)""",
    )
    assert dangling == 0
    assert (
        scalar(
            con,
            "SELECT count(*) FROM concept WHERE domain_id NOT IN (SELECT domain_id FROM domain)",
        )
        == 0
    )
    unknown_vocabulary = """SELECT count(*) FROM concept
        WHERE vocabulary_id NOT IN (SELECT vocabulary_id FROM vocabulary)"""
    assert scalar(con, unknown_vocabulary) == 0


def test_every_standard_and_classification_concept_is_its_own_ancestor(
    con: duckdb.DuckDBPyConnection,
) -> None:
    missing = scalar(
        con,
        """SELECT count(*) FROM concept c WHERE c.standard_concept IN ('S', 'C')
           AND NOT EXISTS (SELECT 1 FROM concept_ancestor a
             WHERE a.ancestor_concept_id = c.concept_id AND a.descendant_concept_id = c.concept_id
               AND a.min_levels_of_separation = 0)""",
    )
    assert missing == 0
    non_standard = scalar(
        con,
        """SELECT count(*) FROM concept_ancestor a
           JOIN concept c ON c.concept_id = a.descendant_concept_id
           WHERE c.standard_concept IS NULL""",
    )
    assert non_standard == 0


def test_drug_classes_contain_their_ingredients(con: duckdb.DuckDBPyConnection) -> None:
    def descendants(ancestor: int) -> set[int]:
        rows = con.execute(
            "SELECT descendant_concept_id FROM concept_ancestor WHERE ancestor_concept_id = ?",
            [ancestor],
        ).fetchall()
        return {row[0] for row in rows}

    assert set(concepts.BETA_BLOCKER_INGREDIENTS) <= descendants(concepts.BETA_BLOCKERS)
    assert set(concepts.ACE_INHIBITOR_INGREDIENTS) <= descendants(concepts.ACE_INHIBITORS)
    assert concepts.METFORMIN in descendants(concepts.BIGUANIDES)
    assert concepts.ATORVASTATIN in descendants(concepts.STATINS)
    assert concepts.AMLODIPINE in descendants(concepts.CALCIUM_CHANNEL_BLOCKERS)
    assert not set(concepts.ACE_INHIBITOR_INGREDIENTS) & descendants(concepts.BETA_BLOCKERS)
    assert concepts.TYPE_2_DIABETES_WITHOUT_COMPLICATION in descendants(concepts.TYPE_2_DIABETES)
    assert concepts.INFLUENZAL_ACUTE_URI in descendants(concepts.INFLUENZA)
    assert concepts.HYPERTENSION in descendants(concepts.HYPERTENSIVE_DISORDER)


def test_ancestor_levels_follow_the_hierarchy(con: duckdb.DuckDBPyConnection) -> None:
    levels = con.execute(
        """SELECT min_levels_of_separation, max_levels_of_separation FROM concept_ancestor
           WHERE ancestor_concept_id = ? AND descendant_concept_id = ?""",
        [concepts.BETA_BLOCKERS, concepts.METOPROLOL],
    ).fetchall()
    assert levels == [(2, 2)]


def test_i10_and_its_icd9_equivalent_map_to_essential_hypertension(
    con: duckdb.DuckDBPyConnection,
) -> None:
    rows = con.execute(
        """SELECT c.vocabulary_id, c.concept_code, r.concept_id_2 FROM concept c
           JOIN concept_relationship r
             ON r.concept_id_1 = c.concept_id AND r.relationship_id = 'Maps to'
           WHERE c.concept_id IN (?, ?) ORDER BY 1""",
        [concepts.ICD10CM_I10, concepts.ICD9CM_401_9],
    ).fetchall()
    assert rows == [
        ("ICD10CM", "I10", concepts.HYPERTENSION),
        ("ICD9CM", "401.9", concepts.HYPERTENSION),
    ]


def test_vocabulary_rows_carry_the_starter_version(con: duckdb.DuckDBPyConnection) -> None:
    versions = {
        row[0] for row in con.execute("SELECT vocabulary_version FROM vocabulary").fetchall()
    }
    assert versions == {STARTER_VOCABULARY_VERSION}


def test_dates_are_read_from_athena_layout(con: duckdb.DuckDBPyConnection) -> None:
    row = con.execute(
        "SELECT valid_start_date, valid_end_date, invalid_reason FROM concept WHERE concept_id = ?",
        [concepts.HYPERTENSION],
    ).fetchone()
    assert row is not None
    assert (str(row[0]), str(row[1]), row[2]) == ("1970-01-01", "2099-12-31", None)


def test_local_concepts_are_in_the_local_range_and_documented() -> None:
    concept = starter_tables()["concept"]
    sources = (starter_directory() / "SOURCES.md").read_text(encoding="utf-8")
    for concept_id, vocabulary, code in zip(
        concept.column("concept_id").to_pylist(),
        concept.column("vocabulary_id").to_pylist(),
        concept.column("concept_code").to_pylist(),
        strict=True,
    ):
        if concept_id >= concepts.LOCAL_CONCEPT_ID_START:
            assert str(concept_id) in sources, (
                f"local concept {concept_id} ({code}) not in SOURCES.md"
            )
        else:
            assert vocabulary != "Accord"


def test_sources_names_every_vocabulary_and_its_terms() -> None:
    sources = (starter_directory() / "SOURCES.md").read_text(encoding="utf-8")
    for vocabulary in ("SNOMED", "LOINC", "RxNorm", "ICD-10-CM", "ICD-9-CM", "ATC", "UCUM"):
        assert re.search(rf"\b{re.escape(vocabulary)}\b", sources), vocabulary
    assert "licen" in sources.lower()


def test_a_file_without_the_cdm_columns_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "DOMAIN.csv"
    path.write_text("domain_id\tdomain_name\nCondition\tCondition\n", encoding="utf-8")
    with pytest.raises(DataError, match="domain_concept_id"):
        read_athena_table(path, "domain")


def test_an_unreadable_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_athena_table(tmp_path / "missing.csv", "concept")
