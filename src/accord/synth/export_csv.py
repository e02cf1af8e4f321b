"""A generated member as a legacy system's CSV extract, with the mapping file to load it.

The extract looks like what an older hospital information system writes, so that the
CSV ingestion path (:mod:`accord.ingest.csv`) is tested on something other than OMOP:

* ``patients.csv`` (``;``-separated): own patient numbers, the national id
  (``person_source_value``), local sex codes ``1``/``2``, birth date as dd/mm/yyyy;
* ``diagnoses.csv`` (``;``-separated, dd/mm/yyyy): each condition coded in ICD-9-CM in
  column ``icd9`` when the vocabulary has an ICD-9-CM code mapping to exactly the
  condition's standard concept (the row's own source code if it is one), else in ICD-10-CM
  in column ``icd10`` under the same rule, else dropped. With the starter vocabulary
  nothing is dropped: influenza recorded as J11.1 keeps ICD-10-CM, since ICD-9-CM 487.1
  maps to a narrower concept;
* ``prescriptions.csv`` (``,``-separated, Latin-1, yyyymmdd dates): RxNorm codes of the
  drugs' standard concepts; drugs without an RxNorm concept are dropped;
* ``mapping.yaml``, and ``extract.json`` with the rows written and dropped, which a
  round-trip comparison subtracts from the member's own figures.

Only persons, conditions and drug exposures are exported; visits, measurements and
procedures stay behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from accord.errors import DataError

MAPPING_FILE: Final = "mapping.yaml"
SUMMARY_FILE: Final = "extract.json"
MAPPING_VERSION: Final = "legacy-his extract 1.0"

_PATIENTS_SQL: Final = """
SELECT printf('P%07d', person_id) AS patient_no,
       person_source_value AS national_id,
       CASE gender_concept_id WHEN 8507 THEN '1' WHEN 8532 THEN '2' ELSE '9' END AS sex,
       strftime(make_date(year_of_birth, coalesce(month_of_birth, 1),
                          coalesce(day_of_birth, 1)), '%d/%m/%Y') AS birth_date
FROM person ORDER BY person_id
"""
# A code is usable for a concept when it maps to that concept and to nothing else, so the
# extract loads back to exactly the member's standard concepts.
_SOLE_TARGET_SQL: Final = """
CREATE TEMPORARY TABLE sole_target AS
SELECT c.vocabulary_id, c.concept_code, min(r.concept_id_2) AS concept_id
FROM concept c JOIN concept_relationship r
  ON r.concept_id_1 = c.concept_id AND r.relationship_id = 'Maps to'
 AND r.invalid_reason IS NULL
WHERE c.vocabulary_id IN ('ICD9CM', 'ICD10CM')
GROUP BY 1, 2 HAVING count(DISTINCT r.concept_id_2) = 1
"""
_DIAGNOSES_SQL: Final = """
WITH coded AS (
  SELECT o.condition_occurrence_id AS id, p.person_source_value AS national_id,
         o.condition_start_date AS start_date, o.condition_end_date AS end_date,
         coalesce(
           (SELECT s.concept_code FROM sole_target s
            WHERE s.vocabulary_id = 'ICD9CM' AND s.concept_id = o.condition_concept_id
              AND s.concept_code = o.condition_source_value),
           (SELECT min(s.concept_code) FROM sole_target s
            WHERE s.vocabulary_id = 'ICD9CM' AND s.concept_id = o.condition_concept_id)
         ) AS icd9,
         coalesce(
           (SELECT s.concept_code FROM sole_target s
            WHERE s.vocabulary_id = 'ICD10CM' AND s.concept_id = o.condition_concept_id
              AND s.concept_code = o.condition_source_value),
           (SELECT min(s.concept_code) FROM sole_target s
            WHERE s.vocabulary_id = 'ICD10CM' AND s.concept_id = o.condition_concept_id)
         ) AS icd10,
         o.condition_concept_id AS concept_id
  FROM condition_occurrence o JOIN person p USING (person_id)
)
SELECT printf('D%08d', id) AS diagnosis_id, national_id,
       strftime(start_date, '%d/%m/%Y') AS diagnosed_on,
       strftime(end_date, '%d/%m/%Y') AS resolved_on,
       icd9, CASE WHEN icd9 IS NULL THEN icd10 END AS icd10, concept_id
FROM coded ORDER BY id
"""
_PRESCRIPTIONS_SQL: Final = """
SELECT printf('RX%08d', d.drug_exposure_id) AS rx_id, p.person_source_value AS national_id,
       c.concept_code AS rxcui,
       strftime(d.drug_exposure_start_date, '%Y%m%d') AS started,
       strftime(d.drug_exposure_end_date, '%Y%m%d') AS ended,
       d.days_supply AS days, d.quantity AS qty, d.drug_concept_id AS concept_id
FROM drug_exposure d JOIN person p USING (person_id)
LEFT JOIN concept c ON c.concept_id = d.drug_concept_id AND c.vocabulary_id = 'RxNorm'
ORDER BY d.drug_exposure_id
"""

_MAPPING_YAML: Final = f"""\
# How to load this legacy extract into an OMOP CDM: accord ingest csv {MAPPING_FILE} --db ...
mapping_version: "{MAPPING_VERSION}"
files:
  - name: patients.csv
    table: person
    delimiter: ";"
    date_formats: ["%d/%m/%Y"]
    key: [patient_no]
    patient: national_id
    columns:
      gender_concept_id: {{column: sex, values: {{1: 8507, 2: 8532, 9: 0}}}}
      gender_source_value: sex
      year_of_birth: {{column: birth_date, part: year}}
      month_of_birth: {{column: birth_date, part: month}}
      day_of_birth: {{column: birth_date, part: day}}
    constants:
      race_concept_id: 0
      ethnicity_concept_id: 0
  - name: diagnoses.csv
    delimiter: ";"
    date_formats: ["%d/%m/%Y"]
    key: [diagnosis_id]
    patient: national_id
    code:
      - {{column: icd9, vocabulary: ICD9CM}}
      - {{column: icd10, vocabulary: ICD10CM}}
    unmapped_table: condition_occurrence
    columns:
      start_date: diagnosed_on
      end_date: resolved_on
    constants:
      type_concept_id: 32817   # EHR
  - name: prescriptions.csv
    encoding: latin-1
    date_formats: ["%Y%m%d"]
    key: [rx_id]
    patient: national_id
    code: {{column: rxcui, vocabulary: RxNorm}}
    unmapped_table: drug_exposure
    columns:
      start_date: started
      end_date: ended
      days_supply: days
      quantity: qty
    constants:
      type_concept_id: 32838   # EHR prescription
"""


def export_legacy_csv(member_db: Path, out_dir: Path) -> Path:
    """Write member ``member_db``'s persons, conditions and drugs as a legacy CSV extract.

    ``out_dir`` is created if needed. Returns the path of the mapping file written with
    the extract; ``extract.json`` beside it counts the rows written and dropped.
    """
    member_db, out_dir = Path(member_db), Path(out_dir)
    if not member_db.is_file():
        raise DataError(f"member database {member_db} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(member_db), read_only=True) as connection:
        patients = connection.sql(_PATIENTS_SQL).to_arrow_table()
        connection.execute(_SOLE_TARGET_SQL)
        diagnoses = connection.sql(_DIAGNOSES_SQL).to_arrow_table()
        prescriptions = connection.sql(_PRESCRIPTIONS_SQL).to_arrow_table()
    diagnoses, dropped_conditions = _drop_uncoded(diagnoses, ["icd9", "icd10"])
    prescriptions, dropped_drugs = _drop_uncoded(prescriptions, ["rxcui"])
    _write(patients, out_dir / "patients.csv", ";", "utf-8")
    _write(diagnoses.drop_columns(["concept_id"]), out_dir / "diagnoses.csv", ";", "utf-8")
    _write(
        prescriptions.drop_columns(["concept_id"]), out_dir / "prescriptions.csv", ",", "latin-1"
    )
    summary: dict[str, Any] = {
        "member_db": member_db.name,
        "rows": {
            "patients.csv": patients.num_rows,
            "diagnoses.csv": diagnoses.num_rows,
            "prescriptions.csv": prescriptions.num_rows,
        },
        "diagnoses_in_icd10": diagnoses.num_rows - diagnoses.column("icd10").null_count,
        "dropped_conditions_by_concept": dropped_conditions,
        "dropped_drugs_by_concept": dropped_drugs,
    }
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    mapping = out_dir / MAPPING_FILE
    mapping.write_text(_MAPPING_YAML, encoding="utf-8")
    return mapping


def _drop_uncoded(rows: pa.Table, code_columns: list[str]) -> tuple[pa.Table, dict[str, int]]:
    """Rows with a code in one of ``code_columns``, and the others counted by concept."""
    coded = rows.column(code_columns[0]).is_valid()
    for name in code_columns[1:]:
        coded = pc.or_(coded, rows.column(name).is_valid())
    dropped = rows.filter(pc.invert(coded)).column("concept_id")
    counts = {str(e["values"]): int(e["counts"]) for e in pc.value_counts(dropped).to_pylist()}
    return rows.filter(coded), counts


def _write(rows: pa.Table, path: Path, delimiter: str, encoding: str) -> None:
    text = _csv_text(rows, delimiter)
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_bytes(text.encode(encoding))
    temporary.replace(path)


def _csv_text(rows: pa.Table, delimiter: str) -> str:
    strings = pa.table({name: rows.column(name).cast(pa.string()) for name in rows.column_names})
    sink = pa.BufferOutputStream()
    options = pacsv.WriteOptions(delimiter=delimiter, quoting_style="needed")
    pacsv.write_csv(strings, sink, write_options=options)
    return bytes(sink.getvalue()).decode("utf-8")
