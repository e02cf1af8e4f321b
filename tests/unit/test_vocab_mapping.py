"""Source codes to standard concepts: one-to-many, unmapped, self-maps, domains, values."""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from accord.cdm import create_cdm
from accord.errors import DataError
from accord.vocab import mapping, systems
from accord.vocab.athena import import_vocabulary, vocabulary_layouts
from accord.vocab.mapping import MAPPED_SCHEMA, ConceptMapper, unmapped_counts
from accord.vocab.systems import (
    FHIR_SYSTEM_VOCABULARIES,
    system_for_vocabulary,
    vocabulary_for_system,
)

# Standard concepts (real OMOP ids where there is one).
HYPERTENSION = 320128
TYPE_2_DIABETES = 201826
HYPERGLYCAEMIA = 4214376
HISTORY_OF = 4214956
NICOTINE_DEPENDENCE = 4209423
SYSTOLIC_BP = 3004249
METFORMIN = 1503297

# (concept_id, vocabulary, code, domain, standard)
CONCEPTS = [
    (HYPERTENSION, "SNOMED", "59621000", "Condition", "S"),
    (TYPE_2_DIABETES, "SNOMED", "44054006", "Condition", "S"),
    (HYPERGLYCAEMIA, "SNOMED", "80394007", "Condition", "S"),
    (HISTORY_OF, "SNOMED", "417662000", "Observation", "S"),
    (NICOTINE_DEPENDENCE, "SNOMED", "56294008", "Condition", "S"),
    (SYSTOLIC_BP, "LOINC", "8480-6", "Measurement", "S"),
    (METFORMIN, "RxNorm", "6809", "Drug", "S"),
    (35207668, "ICD10CM", "I10", "Condition", ""),
    (45561952, "ICD10CM", "E11.65", "Condition", ""),
    (45542411, "ICD10CM", "Z87.891", "Observation", ""),
    (1569170, "ICD10CM", "Z86.79", "Observation", ""),
    (35211388, "ICD10CM", "R69", "Condition", ""),
    (45533016, "ICD10CM", "X99.9", "Condition", ""),
]
# (source, target, relationship, invalid_reason)
RELATIONSHIPS = [
    (35207668, HYPERTENSION, "Maps to", ""),
    (45561952, TYPE_2_DIABETES, "Maps to", ""),
    (45561952, HYPERGLYCAEMIA, "Maps to", ""),
    (45542411, HISTORY_OF, "Maps to", ""),
    (45542411, NICOTINE_DEPENDENCE, "Maps to value", ""),
    (1569170, HYPERTENSION, "Maps to", ""),
    (1569170, HISTORY_OF, "Maps to", ""),
    (1569170, NICOTINE_DEPENDENCE, "Maps to value", ""),
    # A mapping withdrawn in a later release does not count.
    (45533016, HYPERTENSION, "Maps to", "D"),
]


def write_vocabulary(directory: Path) -> Path:
    """The concepts above as a tab-separated Athena download."""
    headers = {layout.name: layout.schema.names for layout in vocabulary_layouts()}
    rows = {
        "concept": [
            [str(cid), f"concept {code}", domain, vocab, "Class", std, code, "19700101",
             "20991231", ""]
            for cid, vocab, code, domain, std in CONCEPTS
        ],
        "concept_relationship": [
            [str(a), str(b), rel, "19700101", "20991231", invalid]
            for a, b, rel, invalid in RELATIONSHIPS
        ],
        "vocabulary": [["None", "OMOP", "", "test release", "0"]],
    }  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    for table, records in rows.items():
        lines = ["\t".join(headers[table]), *("\t".join(record) for record in records)]
        (directory / f"{table.upper()}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def mapper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConceptMapper]:
    connection = duckdb.connect()
    create_cdm(connection, "duckdb")
    import_vocabulary(write_vocabulary(tmp_path_factory.mktemp("vocab")), connection, "duckdb")
    yield ConceptMapper.from_connection(connection)
    connection.close()


def rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return [tuple(row.values()) for row in table.to_pylist()]


def test_one_code_mapping_to_two_concepts_gives_two_rows(mapper: ConceptMapper) -> None:
    mapped = mapper.map_codes("ICD10CM", ["I10", "E11.65"])
    assert mapped.schema == MAPPED_SCHEMA
    assert rows(mapped) == [
        (0, 35207668, HYPERTENSION, "Condition", None),
        (1, 45561952, TYPE_2_DIABETES, "Condition", None),
        (1, 45561952, HYPERGLYCAEMIA, "Condition", None),
    ]


def test_unmapped_codes_map_to_zero(mapper: ConceptMapper) -> None:
    mapped = mapper.map_codes("ICD10CM", ["NOPE", "R69", "X99.9", None])
    assert rows(mapped) == [
        (0, 0, 0, None, None),  # not in CONCEPT at all
        (1, 35211388, 0, None, None),  # in CONCEPT, no 'Maps to'
        (2, 45533016, 0, None, None),  # only a withdrawn 'Maps to'
        (3, 0, 0, None, None),
    ]


def test_a_standard_concept_maps_to_itself(mapper: ConceptMapper) -> None:
    mapped = mapper.map_codes("SNOMED", ["59621000"])
    assert rows(mapped) == [(0, HYPERTENSION, HYPERTENSION, "Condition", None)]


def test_the_target_domain_decides_the_table(mapper: ConceptMapper) -> None:
    assert mapper.map_codes("LOINC", ["8480-6"]).column("domain_id").to_pylist() == ["Measurement"]
    assert mapper.map_codes("RxNorm", ["6809"]).column("domain_id").to_pylist() == ["Drug"]
    # The target's domain counts, not the source concept's own (Observation for Z86.79).
    domains = mapper.map_codes("ICD10CM", ["Z86.79"]).column("domain_id").to_pylist()
    assert domains == ["Condition", "Observation"]


def test_maps_to_value_fills_value_as_concept_on_observations(mapper: ConceptMapper) -> None:
    mapped = mapper.map_codes("ICD10CM", ["Z87.891", "Z86.79"])
    assert rows(mapped) == [
        (0, 45542411, HISTORY_OF, "Observation", NICOTINE_DEPENDENCE),
        (1, 1569170, HYPERTENSION, "Condition", None),
        (1, 1569170, HISTORY_OF, "Observation", NICOTINE_DEPENDENCE),
    ]


def test_input_order_and_repeats_are_kept(mapper: ConceptMapper) -> None:
    codes = ["E11.65", "I10", "NOPE", "I10"] * 1000
    mapped = mapper.map_codes("ICD10CM", pa.chunked_array([codes[:10], codes[10:]]))
    indexes = mapped.column("input_index").to_pylist()
    assert indexes == sorted(indexes)
    assert len(set(indexes)) == len(codes)
    assert mapped.num_rows == len(codes) + 1000  # E11.65 gives two rows each time


def test_codes_may_be_an_arrow_array_but_not_one_string(mapper: ConceptMapper) -> None:
    mapped = mapper.map_codes("ICD10CM", pa.array(["I10"], pa.large_string()))
    assert mapped.column("concept_id").to_pylist() == [HYPERTENSION]
    assert mapper.map_codes("ICD10CM", []).num_rows == 0
    with pytest.raises(DataError, match="single string"):
        mapper.map_codes("ICD10CM", "I10")
    with pytest.raises(DataError, match="must be text"):
        mapper.map_codes("ICD10CM", pa.array([1, 2]))


def test_an_unknown_vocabulary_maps_nothing(mapper: ConceptMapper) -> None:
    assert rows(mapper.map_codes("NOSUCH", ["I10"])) == [(0, 0, 0, None, None)]


def test_unmapped_counts_add_up_across_batches(mapper: ConceptMapper) -> None:
    first = ["I10", "NOPE", "R69", "NOPE"]
    counts = unmapped_counts("ICD10CM", first, mapper.map_codes("ICD10CM", first))
    assert rows(counts) == [("ICD10CM", "NOPE", 2), ("ICD10CM", "R69", 1)]
    second = ["R69", "R69", "E11.65"]
    counts = unmapped_counts(
        "ICD10CM", second, mapper.map_codes("ICD10CM", second), previous=counts
    )
    loinc = ["0000-0"]
    counts = unmapped_counts("LOINC", loinc, mapper.map_codes("LOINC", loinc), previous=counts)
    assert rows(counts) == [
        ("ICD10CM", "R69", 3),
        ("ICD10CM", "NOPE", 2),
        ("LOINC", "0000-0", 1),
    ]


def test_a_fallback_maps_only_what_the_vocabulary_leaves_unmapped(
    mapper: ConceptMapper,
) -> None:
    fallback = pa.table(
        {
            "code": ["R69", "I10", "NEW"],
            "source_concept_id": [35211388, 35207668, 0],
            "concept_id": [TYPE_2_DIABETES, TYPE_2_DIABETES, HYPERGLYCAEMIA],
            "domain_id": ["Condition"] * 3,
            "value_as_concept_id": pa.array([None] * 3, pa.int32()),
        }
    )
    with_fallback = mapper.with_fallback("ICD10CM", fallback)
    mapped = with_fallback.map_codes("ICD10CM", ["R69", "I10", "NEW", "NOPE"])
    assert mapped.column("concept_id").to_pylist() == [
        TYPE_2_DIABETES,  # unmapped in the vocabulary: the fallback fills in
        HYPERTENSION,  # the vocabulary's own mapping wins
        HYPERGLYCAEMIA,
        0,
    ]
    # The original mapper is unchanged.
    assert mapper.map_codes("ICD10CM", ["R69"]).column("concept_id").to_pylist() == [0]
    with pytest.raises(DataError, match="lacks columns"):
        mapper.with_fallback("ICD10CM", fallback.drop_columns(["domain_id"]))


@pytest.mark.postgres
def test_postgres_maps_like_duckdb(
    postgres_dsn: str, postgres_schema: str, tmp_path: Path, mapper: ConceptMapper
) -> None:
    import psycopg

    codes = ["I10", "E11.65", "Z86.79", "R69", "NOPE", "59621000"]
    with psycopg.connect(postgres_dsn, autocommit=True) as pg:
        # Foreign keys need every referenced domain, class and vocabulary row; without
        # them the mapper's behaviour is the point here, not referential integrity.
        create_cdm(pg, "postgres", schema=postgres_schema, foreign_keys=False)
        import_vocabulary(write_vocabulary(tmp_path), pg, "postgres", schema=postgres_schema)
        on_postgres = ConceptMapper.from_connection(pg, schema=postgres_schema)
        for vocabulary in ("ICD10CM", "SNOMED"):
            assert rows(on_postgres.map_codes(vocabulary, codes)) == rows(
                mapper.map_codes(vocabulary, codes)
            )


def test_fhir_systems_name_omop_vocabularies() -> None:
    assert vocabulary_for_system("http://loinc.org") == "LOINC"
    assert vocabulary_for_system("http://loinc.org/") == "LOINC"
    assert vocabulary_for_system("http://hl7.org/fhir/sid/icd-9-cm") == "ICD9CM"
    assert vocabulary_for_system("http://hl7.org/fhir/administrative-gender") == "Gender"
    assert vocabulary_for_system("http://example.org/local") is None
    for system, vocabulary in FHIR_SYSTEM_VOCABULARIES.items():
        assert system_for_vocabulary(vocabulary) == system


@pytest.mark.parametrize("module", [mapping, systems])
def test_docstring_examples(module: ModuleType) -> None:
    assert doctest.testmod(module).failed == 0
