"""The CSV mapping file is checked whole before any row is read, with YAML line numbers."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

import accord.ingest.csv.mapping as mapping_module
from accord.errors import ConfigError
from accord.ingest.csv import read_mapping

VOCABULARIES = frozenset({"ICD9CM", "ICD10CM", "RxNorm", "SNOMED"})

VALID = """\
mapping_version: "v1"
files:
  - name: patients.csv
    table: person
    key: [patient_no]
    patient: national_id
    columns:
      gender_concept_id: {column: sex, values: {1: 8507, 2: 8532}}
      year_of_birth: {column: born, part: year}
    constants:
      race_concept_id: 0
      ethnicity_concept_id: 0
  - name: diagnoses.csv
    code: {column: icd9, vocabulary: ICD9CM}
    unmapped_table: condition_occurrence
    key: [id]
    patient: national_id
    columns:
      start_date: seen_on
    constants:
      type_concept_id: 32817
"""


def problems(tmp_path: Path, text: str) -> list[tuple[int, str]]:
    """Each problem the mapping file has, as (line, message)."""
    path = tmp_path / "mapping.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_mapping(path, vocabularies=VOCABULARIES)
    found = re.findall(r"line (\d+): (.*)", caught.value.message)
    return [(int(line), message) for line, message in found]


def edited(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new)


def test_a_valid_file_reads_into_rules(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(VALID, encoding="utf-8")
    mapping = read_mapping(path, vocabularies=VOCABULARIES)
    patients, diagnoses = mapping.files
    assert mapping.mapping_version == "v1"
    assert patients.table == "person"
    assert patients.source_columns == ("patient_no", "national_id", "sex", "born")
    sex = next(rule for rule in patients.rules if rule.field == "gender_concept_id")
    # Value-map keys are the CSV text, however YAML typed them.
    assert sex.values == (("1", 8507), ("2", 8532))
    assert diagnoses.codes[0].vocabulary == "ICD9CM"


def test_unknown_keys_are_named_with_their_line(tmp_path: Path) -> None:
    found = problems(tmp_path, edited("    key: [patient_no]\n", "    keys: [patient_no]\n"))
    assert found == [
        (3, "file patients.csv: missing 'key'"),
        (
            5,
            "file patients.csv: unknown key 'keys' (expected code, columns, constants, "
            "date_formats, delimiter, encoding, key, name, patient, table, unmapped_table)",
        ),
    ]


def test_unknown_cdm_table(tmp_path: Path) -> None:
    found = problems(tmp_path, edited("table: person", "table: persons"))
    assert found == [(4, "file patients.csv: 'persons' is not an OMOP CDM v5.4 table")]


def test_unknown_cdm_field(tmp_path: Path) -> None:
    found = problems(tmp_path, edited("year_of_birth:", "birth_year:"))
    assert (9, "file patients.csv: columns: person has no field 'birth_year'") in found
    # Without it the required year_of_birth is not covered either; reported at the file.
    assert (3, "file patients.csv: required field year_of_birth has no column or constant") in (
        found
    )


def test_unknown_event_field_in_a_coded_file(tmp_path: Path) -> None:
    found = problems(tmp_path, edited("start_date: seen_on", "start_date: seen_on\n      ward: x"))
    assert (20, "file diagnoses.csv: columns: 'ward' is not an event field") in found


def test_fields_the_loader_fills_cannot_be_mapped(tmp_path: Path) -> None:
    found = problems(
        tmp_path, edited("start_date: seen_on", "start_date: seen_on\n      concept_id: x")
    )
    assert (20, "file diagnoses.csv: columns: 'concept_id' is set by the loader") in found


def test_unknown_vocabulary(tmp_path: Path) -> None:
    found = problems(tmp_path, edited("vocabulary: ICD9CM", "vocabulary: ICD11"))
    assert found == [
        (14, "file diagnoses.csv: vocabulary 'ICD11' is not in the target's VOCABULARY table")
    ]


def test_bad_date_format(tmp_path: Path) -> None:
    found = problems(
        tmp_path, edited("    key: [id]\n", '    key: [id]\n    date_formats: ["%d/%m"]\n')
    )
    assert len(found) == 1
    assert found[0][0] == 17
    assert "date format '%d/%m' does not read back a whole date" in found[0][1]


def test_missing_required_sections(tmp_path: Path) -> None:
    found = problems(tmp_path, 'mapping_version: "v1"\n')
    assert found == [(1, "the mapping file: missing 'files'")]
    found = problems(tmp_path, edited("    unmapped_table: condition_occurrence\n", ""))
    assert found == [
        (13, "file diagnoses.csv: coded rows need unmapped_table, for codes with concept 0")
    ]


def test_constants_must_fit_the_field(tmp_path: Path) -> None:
    found = problems(tmp_path, edited("race_concept_id: 0", "race_concept_id: white"))
    assert found == [
        (11, "file patients.csv: constants: race_concept_id: 'white' is not an integer")
    ]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = edited("table: person", "table: persons")
    text = text.replace("vocabulary: ICD9CM", "vocabulary: ICD11").replace(
        "name: diag", "nam: diag"
    )
    found = problems(tmp_path, text)
    assert [line for line, _ in found] == sorted(line for line, _ in found)
    assert {4, 13, 14} <= {line for line, _ in found}


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text('mapping_version: "v1"\nfiles:\n  - name: [unclosed\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line \d+: not valid YAML"):
        read_mapping(path)


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    doc = mapping_module.__doc__ or ""
    example = doc.split("A full example::\n", 1)[1].split("\nRules a reader", 1)[0]
    text = textwrap.dedent(example)
    (tmp_path / "icd9_to_icd10_gem.txt").write_text("4011 I10 10000\n", encoding="utf-8")
    path = tmp_path / "mapping.yaml"
    path.write_text(text, encoding="utf-8")
    mapping = read_mapping(path, vocabularies=VOCABULARIES)
    assert [f.name for f in mapping.files] == ["patients.csv", "diagnoses.csv"]
    assert mapping.gem == tmp_path / "icd9_to_icd10_gem.txt"
