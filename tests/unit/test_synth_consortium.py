"""A generated consortium: its manifest agrees with SQL on the member databases, and the
data has the shape the scenarios need."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from accord.cdm import arrow_schema
from accord.synth import ConsortiumManifest, MemberManifest, generate_consortium
from accord.synth.profiles import MEMBER_ID_PATTERN
from accord.synth.writer import MEMBER_TABLES
from accord.vocab import concepts as c

AS_OF = date(2025, 12, 31)
PERSONS = 1500


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ConsortiumManifest]:
    directory = tmp_path_factory.mktemp("consortium")
    manifest = generate_consortium(directory, members=5, persons_per_member=PERSONS, seed=11)
    return directory, manifest


@pytest.fixture
def members(
    consortium: tuple[Path, ConsortiumManifest],
) -> Iterator[list[tuple[MemberManifest, duckdb.DuckDBPyConnection]]]:
    directory, manifest = consortium
    connections = [
        (member, duckdb.connect(str(directory / member.db_file), read_only=True))
        for member in manifest.members
    ]
    yield connections
    for _, connection in connections:
        connection.close()


def scalar(con: duckdb.DuckDBPyConnection, sql: str, parameters: list[object] | None = None) -> int:
    row = con.execute(sql, parameters or []).fetchone()
    assert row is not None
    return int(row[0])


def test_directory_holds_one_database_per_member_and_the_manifest(
    consortium: tuple[Path, ConsortiumManifest],
) -> None:
    directory, manifest = consortium
    names = sorted(path.name for path in directory.iterdir())
    assert names == sorted([m.db_file for m in manifest.members] + ["manifest.json"])
    assert [m.kind for m in manifest.members] == [
        "hospital",
        "clinic",
        "insurer",
        "trial-site",
        "public-health",
    ]
    assert all(MEMBER_ID_PATTERN.fullmatch(m.id) for m in manifest.members)
    assert ConsortiumManifest.load(directory) == manifest


def test_person_and_death_counts_match(
    members: list[tuple[MemberManifest, duckdb.DuckDBPyConnection]],
) -> None:
    for member, con in members:
        assert member.persons == PERSONS
        assert scalar(con, "SELECT count(*) FROM person") == member.persons
        assert (
            scalar(con, "SELECT count(DISTINCT person_source_value) FROM person") == member.persons
        )
        assert scalar(con, "SELECT count(*) FROM death") == member.deaths
        assert member.deaths > 0


def test_row_counts_match(members: list[tuple[MemberManifest, duckdb.DuckDBPyConnection]]) -> None:
    for member, con in members:
        for table in MEMBER_TABLES:
            assert scalar(con, f"SELECT count(*) FROM {table}") == member.rows[table], table


def test_condition_prevalence_matches_sql_through_concept_ancestor(
    consortium: tuple[Path, ConsortiumManifest],
    members: list[tuple[MemberManifest, duckdb.DuckDBPyConnection]],
) -> None:
    _, manifest = consortium
    for member, con in members:
        for group, concept in manifest.condition_concepts.items():
            persons = scalar(
                con,
                """SELECT count(DISTINCT co.person_id) FROM condition_occurrence co
                   JOIN concept_ancestor ca ON ca.descendant_concept_id = co.condition_concept_id
                   WHERE ca.ancestor_concept_id = ?""",
                [concept],
            )
            assert member.conditions[group].persons == persons, (member.id, group)
            assert member.conditions[group].prevalence == round(persons / member.persons, 6)


def test_drug_counts_match_sql(
    consortium: tuple[Path, ConsortiumManifest],
    members: list[tuple[MemberManifest, duckdb.DuckDBPyConnection]],
) -> None:
    _, manifest = consortium
    for member, con in members:
        for group, concept in manifest.drug_concepts.items():
            persons = scalar(
                con,
                """SELECT count(DISTINCT de.person_id) FROM drug_exposure de
                   JOIN concept_ancestor ca ON ca.descendant_concept_id = de.drug_concept_id
                   WHERE ca.ancestor_concept_id = ?""",
                [concept],
            )
            assert member.drugs[group] == persons, (member.id, group)


TRIAL_SQL = """
SELECT count(*) FROM person p
WHERE 2025 - p.year_of_birth BETWEEN 45 AND 75
  AND EXISTS (
    SELECT 1 FROM condition_occurrence co
    JOIN concept_ancestor ca ON ca.descendant_concept_id = co.condition_concept_id
    WHERE ca.ancestor_concept_id = 320128 AND co.person_id = p.person_id)
  AND NOT EXISTS (
    SELECT 1 FROM drug_exposure de
    JOIN concept_ancestor ca ON ca.descendant_concept_id = de.drug_concept_id
    WHERE ca.ancestor_concept_id = 21601664 AND de.person_id = p.person_id)
"""


def test_trial_recruitment_matches_a_hand_written_query(
    members: list[tuple[MemberManifest, duckdb.DuckDBPyConnection]],
) -> None:
    for member, con in members:
        assert scalar(con, TRIAL_SQL) == member.trial_recruitment, member.id
        assert member.trial_recruitment > 0


def test_hypertension_through_source_codes_finds_the_same_people(
    members: list[tuple[MemberManifest, duckdb.DuckDBPyConnection]],
) -> None:
    # "I10 or its equivalents": from the ICD-10-CM code, through 'Maps to', to the
    # standard concept and its descendants.
    for member, con in members:
        via_i10 = scalar(
            con,
            """SELECT count(DISTINCT co.person_id) FROM concept src
               JOIN concept_relationship r
                 ON r.concept_id_1 = src.concept_id AND r.relationship_id = 'Maps to'
               JOIN concept_ancestor ca ON ca.ancestor_concept_id = r.concept_id_2
               JOIN condition_occurrence co ON co.condition_concept_id = ca.descendant_concept_id
               WHERE src.vocabulary_id = 'ICD10CM' AND src.concept_code = 'I10'""",
        )
        assert via_i10 == member.conditions["hypertension"].persons
        icd9 = scalar(
            con, "SELECT count(*) FROM condition_occurrence WHERE condition_source_value = '401.9'"
        )
        assert icd9 > 0, "records before October 2015 carry ICD-9-CM codes"


def test_source_values_are_the_codes_of_the_source_concepts(
    members: list[tuple[MemberManifest, duckdb.DuckDBPyConnection]],
) -> None:
    for _, con in members:
        mismatched = scalar(
            con,
            """SELECT count(*) FROM condition_occurrence co
               JOIN concept src ON src.concept_id = co.condition_source_concept_id
               JOIN concept_relationship r
                 ON r.concept_id_1 = src.concept_id AND r.relationship_id = 'Maps to'
               WHERE src.concept_code <> co.condition_source_value
                  OR r.concept_id_2 <> co.condition_concept_id
                  OR src.vocabulary_id <> CASE WHEN co.condition_start_date < DATE '2015-10-01'
                                               THEN 'ICD9CM' ELSE 'ICD10CM' END""",
        )
        assert mismatched == 0
        unmapped = scalar(
            con,
            """SELECT count(*) FROM condition_occurrence co WHERE condition_source_concept_id
               NOT IN (SELECT concept_id FROM concept)""",
        )
        assert unmapped == 0


def test_overlaps_match_national_ids_across_two_files(
    consortium: tuple[Path, ConsortiumManifest],
) -> None:
    directory, manifest = consortium
    con = duckdb.connect()
    for member in manifest.members:
        con.execute(f"ATTACH '{directory / member.db_file}' AS \"{member.id}\" (READ_ONLY)")
    checked = 0
    for first in manifest.members:
        for second in manifest.members:
            if first.id >= second.id:
                continue
            shared = scalar(
                con,
                f"""SELECT count(*) FROM "{first.id}".person a
                    JOIN "{second.id}".person b ON a.person_source_value = b.person_source_value""",
            )
            assert (
                shared
                == manifest.overlap(first.id, second.id)
                == manifest.overlap(second.id, first.id)
            )
            checked += shared
    assert checked > 0
    con.close()


def test_shared_persons_look_the_same_at_both_members(
    consortium: tuple[Path, ConsortiumManifest],
) -> None:
    directory, manifest = consortium
    con = duckdb.connect()
    hospital, clinic = manifest.members[0], manifest.members[1]
    con.execute(f"ATTACH '{directory / hospital.db_file}' AS h (READ_ONLY)")
    con.execute(f"ATTACH '{directory / clinic.db_file}' AS k (READ_ONLY)")
    differing = scalar(
        con,
        """SELECT count(*) FROM h.person a JOIN k.person b USING (person_source_value)
           WHERE a.year_of_birth <> b.year_of_birth OR a.month_of_birth <> b.month_of_birth
              OR a.day_of_birth <> b.day_of_birth OR a.gender_concept_id <> b.gender_concept_id
              OR a.location_id <> b.location_id""",
    )
    assert differing == 0
    con.close()


def test_every_concept_used_exists_in_the_concept_table(
    members: list[tuple[MemberManifest, duckdb.DuckDBPyConnection]],
) -> None:
    for member, con in members:
        for table in MEMBER_TABLES:
            for field in arrow_schema(table):
                if not field.name.endswith("concept_id"):
                    continue
                missing = scalar(
                    con,
                    f"""SELECT count(*) FROM {table} WHERE {field.name} IS NOT NULL
                        AND {field.name} NOT IN (SELECT concept_id FROM concept)""",
                )
                assert missing == 0, (member.id, table, field.name)


def test_required_columns_are_never_null(
    members: list[tuple[MemberManifest, duckdb.DuckDBPyConnection]],
) -> None:
    for member, con in members:
        for table in MEMBER_TABLES:
            for field in arrow_schema(table):
                if field.nullable:
                    continue
                nulls = scalar(con, f"SELECT count(*) FROM {table} WHERE {field.name} IS NULL")
                assert nulls == 0, (member.id, table, field.name)


def test_events_fall_inside_observation_periods(
    members: list[tuple[MemberManifest, duckdb.DuckDBPyConnection]],
) -> None:
    for member, con in members:
        for table, column in (
            ("visit_occurrence", "visit_start_date"),
            ("condition_occurrence", "condition_start_date"),
            ("procedure_occurrence", "procedure_date"),
            ("measurement", "measurement_date"),
        ):
            outside = scalar(
                con,
                f"""SELECT count(*) FROM {table} e JOIN observation_period o USING (person_id)
                    WHERE e.{column} < o.observation_period_start_date
                       OR e.{column} > o.observation_period_end_date""",
            )
            assert outside == 0, (member.id, table)
        after_death = scalar(
            con,
            """SELECT count(*) FROM visit_occurrence v JOIN death d USING (person_id)
               WHERE v.visit_start_date > d.death_date""",
        )
        assert after_death == 0


def test_influenza_peaks_in_winter(
    members: list[tuple[MemberManifest, duckdb.DuckDBPyConnection]],
) -> None:
    for member, con in members:
        winter, summer = con.execute(
            """SELECT count(*) FILTER (WHERE month(condition_start_date) IN (12, 1, 2)),
                      count(*) FILTER (WHERE month(condition_start_date) IN (6, 7, 8))
               FROM condition_occurrence co
               JOIN concept_ancestor ca ON ca.descendant_concept_id = co.condition_concept_id
               WHERE ca.ancestor_concept_id = ?""",
            [c.INFLUENZA],
        ).fetchone() or (0, 0)
        assert winter > 3 * summer, member.id


def test_recent_influenza_by_region_and_day(
    members: list[tuple[MemberManifest, duckdb.DuckDBPyConnection]],
) -> None:
    first_day = AS_OF - timedelta(days=6)
    regions: set[str] = set()
    for member, con in members:
        rows = con.execute(
            """SELECT l.location_source_value, co.condition_start_date, count(*)
               FROM condition_occurrence co
               JOIN concept_ancestor ca ON ca.descendant_concept_id = co.condition_concept_id
               JOIN person p USING (person_id) JOIN location l USING (location_id)
               WHERE ca.ancestor_concept_id = ? AND co.condition_start_date BETWEEN ? AND ?
               GROUP BY ALL""",
            [c.INFLUENZA, first_day, AS_OF],
        ).fetchall()
        assert sum(count for _, _, count in rows) == member.influenza_last_7_days
        regions.update(region for region, _, _ in rows)
    assert len(regions) >= 3


def test_regional_waves_peak_in_different_weeks(
    members: list[tuple[MemberManifest, duckdb.DuckDBPyConnection]],
) -> None:
    public_health = next(con for member, con in members if member.kind == "public-health")
    peaks = public_health.execute(
        """WITH weekly AS (
             SELECT l.location_source_value AS region,
                    (co.condition_start_date - DATE '2024-09-01') // 7 AS week, count(*) AS cases
             FROM condition_occurrence co JOIN person p USING (person_id)
             JOIN location l USING (location_id)
             WHERE co.condition_concept_id = ?
               AND co.condition_start_date BETWEEN DATE '2024-09-01' AND DATE '2025-05-31'
             GROUP BY ALL)
           SELECT region, arg_max(week, cases) FROM weekly GROUP BY region ORDER BY region""",
        [c.INFLUENZA],
    ).fetchall()
    assert len({week for _, week in peaks}) >= 3


def test_hypertension_prevalence_rises_with_age(
    members: list[tuple[MemberManifest, duckdb.DuckDBPyConnection]],
) -> None:
    hospital = members[0][1]
    by_band = dict(
        hospital.execute(
            """SELECT (2025 - year_of_birth) // 20 AS band,
                      avg(CASE WHEN EXISTS (SELECT 1 FROM condition_occurrence co
                          WHERE co.person_id = p.person_id AND co.condition_concept_id = 320128)
                          THEN 1 ELSE 0 END)
               FROM person p GROUP BY band"""
        ).fetchall()
    )
    assert by_band[1] < by_band[2] < by_band[3]
    assert 0.15 < by_band[3] < 0.6


def test_blood_pressure_is_higher_with_hypertension_and_hba1c_with_diabetes(
    members: list[tuple[MemberManifest, duckdb.DuckDBPyConnection]],
) -> None:
    clinic = members[1][1]
    rows = dict(
        clinic.execute(
            """SELECT EXISTS (SELECT 1 FROM condition_occurrence co WHERE co.person_id = m.person_id
                              AND co.condition_concept_id = 320128), avg(value_as_number)
               FROM measurement m WHERE measurement_concept_id = ? GROUP BY 1""",
            [c.SYSTOLIC_BP],
        ).fetchall()
    )
    assert rows[True] > rows[False] + 8
    diabetic = dict(
        clinic.execute(
            """SELECT EXISTS (SELECT 1 FROM condition_occurrence co
                              JOIN concept_ancestor ca
                                ON ca.descendant_concept_id = co.condition_concept_id
                              WHERE co.person_id = m.person_id
                                AND ca.ancestor_concept_id = 201826),
                      avg(value_as_number)
               FROM measurement m WHERE measurement_concept_id = ? GROUP BY 1""",
            [c.HBA1C],
        ).fetchall()
    )
    assert diabetic[True] > diabetic[False] + 1.0


def test_insurer_holds_claims_costs_and_enrolment(
    members: list[tuple[MemberManifest, duckdb.DuckDBPyConnection]],
) -> None:
    member, insurer = next((m, con) for m, con in members if m.kind == "insurer")
    types = {
        row[0]
        for row in insurer.execute(
            "SELECT DISTINCT visit_type_concept_id FROM visit_occurrence"
        ).fetchall()
    }
    assert types == {c.CLAIM}
    assert scalar(insurer, "SELECT count(*) FROM payer_plan_period") == member.persons
    assert scalar(insurer, "SELECT count(*) FROM measurement") == 0
    unmatched = scalar(
        insurer,
        """SELECT count(*) FROM cost WHERE cost_domain_id = 'Visit'
           AND cost_event_id NOT IN (SELECT visit_occurrence_id FROM visit_occurrence)""",
    )
    assert unmatched == 0
    assert scalar(insurer, "SELECT count(*) FROM cost WHERE paid_by_payer > total_charge") == 0
    duplicates = scalar(
        insurer,
        """SELECT count(*) FROM (SELECT person_id, procedure_concept_id, procedure_date
           FROM procedure_occurrence GROUP BY ALL HAVING count(DISTINCT provider_id) > 1)""",
    )
    assert duplicates == member.procedure_duplicates > 0


def test_procedure_duplicates_match_sql_everywhere(
    members: list[tuple[MemberManifest, duckdb.DuckDBPyConnection]],
) -> None:
    for member, con in members:
        duplicates = scalar(
            con,
            """SELECT count(*) FROM (SELECT person_id, procedure_concept_id, procedure_date
               FROM procedure_occurrence GROUP BY ALL HAVING count(DISTINCT provider_id) > 1)""",
        )
        assert duplicates == member.procedure_duplicates


def test_insurer_claims_match_encounters_recorded_at_the_hospital(
    consortium: tuple[Path, ConsortiumManifest],
) -> None:
    directory, manifest = consortium
    hospital = manifest.members[0]
    insurer = next(m for m in manifest.members if m.kind == "insurer")
    con = duckdb.connect()
    con.execute(f"ATTACH '{directory / hospital.db_file}' AS h (READ_ONLY)")
    con.execute(f"ATTACH '{directory / insurer.db_file}' AS i (READ_ONLY)")
    claims, matched = con.execute(
        """WITH shared AS (
             SELECT hp.person_id AS hospital_person, ip.person_id AS insurer_person
             FROM h.person hp JOIN i.person ip USING (person_source_value))
           SELECT count(*), count(*) FILTER (WHERE EXISTS (
             SELECT 1 FROM h.visit_occurrence hv WHERE hv.person_id = s.hospital_person
               AND hv.visit_start_date = iv.visit_start_date
               AND hv.visit_concept_id = iv.visit_concept_id))
           FROM shared s JOIN i.visit_occurrence iv ON iv.person_id = s.insurer_person"""
    ).fetchone() or (0, 0)
    assert claims > 0
    assert matched == claims
    con.close()


def test_manifest_round_trips_through_json(consortium: tuple[Path, ConsortiumManifest]) -> None:
    _, manifest = consortium
    assert ConsortiumManifest.from_json(manifest.to_json()) == manifest
    assert "trial_recruitment" in manifest.definitions
    assert manifest.as_of == AS_OF
