"""Data quality defects planted at known rates in a synthetic member's CDM.

:func:`plant_defects` edits a generated member's tables in place so that each defect
class below is violated by an exact, known number of rows, and returns those numbers
keyed by the id of the quality check (:mod:`accord.quality`) that must count them. The
gate is then tested against ground truth: every class found with exactly its planted
count, and nothing failing on the same member left clean.

Each class changes rows that no other class touches, and that stay clean for every
other class's check: every table a class plants in is dealt at random into one share
per class planted in it, and a class only picks rows of its own share. ``rate`` is the
fraction of the eligible rows of that share planted (at least one row when there is
one). Persons given a birth year in the future have no condition rows (the event-before-
birth check counts condition rows) and none of their rows is picked for another class.
Rows are chosen with numpy from the seed and changed with set-based SQL (``UPDATE ...
FROM`` a registered Arrow table), all in one transaction.

Dates in the future are placed at least ``FUTURE_MARGIN_YEARS`` after ``today``, so the
gate still counts them when it runs some years later than the data's as-of date.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Final

import duckdb
import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from accord.errors import DataError
from accord.vocab import concepts as c

logger = logging.getLogger(__name__)

I64 = NDArray[np.int64]
Mask = NDArray[np.bool_]

MAX_RATE: Final = 0.5
FUTURE_MARGIN_YEARS: Final = 10
"""Future births and events lie this many years or more after ``today``."""
DEATH_MARGIN_DAYS: Final = 90
"""Events after death start at least this many days after it (the check allows 60)."""
VISIT_MARGIN_DAYS: Final = 31
"""Events outside their visit are this many days or more after the visit ends."""
DEPRECATED_MEASUREMENT: Final = c.LOCAL_CONCEPT_ID_START + 900_001
"""A local measurement concept added, deprecated, by planting (also marks a planted member)."""
INVALID_IDS: Final = 1000
"""How many different unknown concept ids invalid codes use."""
_EPOCH: Final = date(1970, 1, 1)
_VIEW: Final = "accord_planted_defects"


@dataclass(frozen=True)
class Defect:
    """One defect class: the check that counts it, the table it is planted in."""

    check_id: str
    table: str
    description: str


FUTURE_BIRTH = Defect(
    "plausibility.range.person.year_of_birth", "person", "year of birth in the future"
)
BEFORE_BIRTH = Defect(
    "plausibility.after_birth.condition_occurrence.condition_start_date",
    "condition_occurrence",
    "condition in a year before the person's year of birth",
)
NON_STANDARD = Defect(
    "conformance.standard_concept.condition_occurrence.condition_concept_id",
    "condition_occurrence",
    "non-standard (ICD-10-CM) concept in condition_concept_id",
)
SEX_IMPLAUSIBLE = Defect(
    "plausibility.sex.condition_occurrence.condition_concept_id",
    "condition_occurrence",
    "female-only condition on a man, or male-only on a woman",
)
OUTSIDE_VISIT = Defect(
    "plausibility.in_visit.condition_occurrence.condition_start_date",
    "condition_occurrence",
    "condition dated after the end of its visit",
)
WRONG_DOMAIN = Defect(
    "conformance.concept_domain.condition_occurrence.condition_concept_id",
    "condition_occurrence",
    "standard drug concept in condition_concept_id",
)
INVALID_CODE = Defect(
    "conformance.concept.procedure_occurrence.procedure_concept_id",
    "procedure_occurrence",
    "procedure_concept_id not in concept",
)
FUTURE_EVENT = Defect(
    "plausibility.future.procedure_occurrence.procedure_date",
    "procedure_occurrence",
    "procedure dated in the future",
)
ORPHAN = Defect(
    "conformance.foreign_key.drug_exposure.person_id",
    "drug_exposure",
    "drug exposure of a person not in person",
)
AFTER_DEATH = Defect(
    "plausibility.after_death.drug_exposure.drug_exposure_start_date",
    "drug_exposure",
    "drug exposure starting more than 60 days after death",
)
END_BEFORE_START = Defect(
    "plausibility.start_before_end.drug_exposure.drug_exposure_start_date",
    "drug_exposure",
    "drug exposure ending before it starts",
)
DAYS_SUPPLY = Defect(
    "plausibility.range.drug_exposure.days_supply",
    "drug_exposure",
    "days_supply above 365",
)
REFILLS = Defect("plausibility.range.drug_exposure.refills", "drug_exposure", "refills above 24")
BEFORE_MARKET = Defect(
    "plausibility.before_market.drug_exposure.drug_exposure_start_date",
    "drug_exposure",
    "drug exposure before its ingredient was first marketed",
)
IMPOSSIBLE_VALUE = Defect(
    "plausibility.value.measurement.value_as_number",
    "measurement",
    "measurement value outside the plausible range for its concept and unit",
)
DEPRECATED = Defect(
    "conformance.valid_concept.measurement.measurement_concept_id",
    "measurement",
    "deprecated concept in measurement_concept_id",
)

DEFECTS: Final[tuple[Defect, ...]] = (
    FUTURE_BIRTH,
    BEFORE_BIRTH,
    NON_STANDARD,
    SEX_IMPLAUSIBLE,
    OUTSIDE_VISIT,
    WRONG_DOMAIN,
    INVALID_CODE,
    FUTURE_EVENT,
    ORPHAN,
    AFTER_DEATH,
    END_BEFORE_START,
    DAYS_SUPPLY,
    REFILLS,
    BEFORE_MARKET,
    IMPOSSIBLE_VALUE,
    DEPRECATED,
)
"""Every defect class, in the order :func:`plant_defects` reports them."""


def check_rate(rate: object) -> float:
    """``rate`` as a float, or a :class:`DataError` saying what a defect rate must be."""
    if (
        isinstance(rate, bool)
        or not isinstance(rate, int | float)
        or not math.isfinite(rate)
        or not 0 <= rate <= MAX_RATE
    ):
        raise DataError(
            f"defect rate must be a fraction from 0 to {MAX_RATE}, got {rate!r}",
            hint="pass e.g. 0.01 to plant defects in 1% of the eligible rows of each class",
        )
    return float(rate)


def plant_defects(
    database: duckdb.DuckDBPyConnection | Path | str,
    *,
    rate: float,
    seed: int,
    today: date,
) -> dict[str, int]:
    """Plant every defect class in ``rate`` of its eligible rows; returns the rows
    planted per check id (empty when ``rate`` is 0).

    ``database`` is an open DuckDB connection or the path of a member's DuckDB file.
    The same data, ``rate`` and ``seed`` always change the same rows the same way.
    ``today`` is the date the quality gate is run as of. A class with no eligible row
    is reported with 0. Planting twice in the same member is refused.
    """
    rate = check_rate(rate)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(
            f"defect seed must be a non-negative whole number, got {seed!r}",
            hint="pass e.g. seed=7",
        )
    if not isinstance(today, date):
        raise DataError(f"today must be a date, got {today!r}", hint="pass e.g. date.today()")
    if rate == 0:
        return {}
    with _connected(database) as con:
        try:
            planted = _plant(con, rate, seed, today)
        except (duckdb.CatalogException, duckdb.BinderException) as exc:
            raise DataError(
                f"cannot plant defects: not a generated OMOP CDM member ({_first_line(exc)})",
                hint="point at a member database written by accord synth",
            ) from exc
    logger.info("planted %d defects in %d classes", sum(planted.values()), len(planted))
    return planted


@contextmanager
def _connected(
    database: duckdb.DuckDBPyConnection | Path | str,
) -> Iterator[duckdb.DuckDBPyConnection]:
    if isinstance(database, duckdb.DuckDBPyConnection):
        yield database
        return
    path = Path(database)
    if not path.is_file():
        raise DataError(
            f"no member database at {path}", hint="generate the member first (accord synth)"
        )
    try:
        con = duckdb.connect(str(path))
    except duckdb.Error as exc:
        raise DataError(
            f"cannot open {path}: {_first_line(exc)}",
            hint="point at a DuckDB file no other process has open",
        ) from exc
    try:
        yield con
    finally:
        con.close()


# --- choosing rows --------------------------------------------------------------------


class _Chooser:
    """Deals each table's rows into one share per class planted in it, and picks
    ``rate`` of a class's eligible rows from its share."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        tables = sorted({d.table for d in DEFECTS})
        seeds = np.random.SeedSequence(seed).spawn(len(DEFECTS) + len(tables))
        generators = [np.random.default_rng(s) for s in seeds]
        self.rngs = {d.check_id: g for d, g in zip(DEFECTS, generators, strict=False)}
        self.table_rngs = dict(zip(tables, generators[len(DEFECTS) :], strict=True))
        self.shares: dict[str, NDArray[np.int64]] = {}

    def rng(self, defect: Defect) -> np.random.Generator:
        return self.rngs[defect.check_id]

    def share(self, table: str, rows: int) -> NDArray[np.int64]:
        if table not in self.shares:
            classes = [d for d in DEFECTS if d.table == table]
            share = np.empty(rows, dtype=np.int64)
            share[self.table_rngs[table].permutation(rows)] = np.arange(rows) % len(classes)
            self.shares[table] = share
        return self.shares[table]

    def choose(self, defect: Defect, eligible: Mask) -> I64:
        """Row positions planted for ``defect``, sorted."""
        classes = [d for d in DEFECTS if d.table == defect.table]
        mine = self.share(defect.table, len(eligible)) == classes.index(defect)
        candidates = np.flatnonzero(eligible & mine)
        if len(candidates) == 0:
            return candidates.astype(np.int64)
        count = min(len(candidates), max(1, round(self.rate * len(candidates))))
        picked = self.rng(defect).choice(candidates, size=count, replace=False)
        return np.sort(picked).astype(np.int64)


@dataclass
class _Plan:
    """What planting does: per class, the rows' ids and new column values."""

    concepts: list[tuple[Any, ...]]
    updates: list[tuple[Defect, str, dict[str, pa.Array]]]
    counts: dict[str, int]

    def add(self, defect: Defect, key: str, ids: I64, **columns: pa.Array) -> None:
        self.counts[defect.check_id] = len(ids)
        if len(ids):
            self.updates.append((defect, key, {"id": pa.array(ids), **columns}))


def _plant(con: duckdb.DuckDBPyConnection, rate: float, seed: int, today: date) -> dict[str, int]:
    rules = _rules()
    if _scalar(con, "SELECT count(*) FROM concept WHERE concept_id = ?", [DEPRECATED_MEASUREMENT]):
        raise DataError(
            "this member already has planted defects",
            hint="generate the member again to plant defects at another rate or seed",
        )
    chooser = _Chooser(rate, seed)
    plan = _Plan(concepts=[], updates=[], counts={})
    future_day = _day(today.replace(year=today.year + FUTURE_MARGIN_YEARS, day=min(today.day, 28)))

    # person: births in the future, for persons with no condition rows.
    person = _fetch(
        con,
        """
        SELECT p.person_id AS id,
               NOT EXISTS (SELECT 1 FROM condition_occurrence o WHERE o.person_id = p.person_id)
                 AS no_conditions
        FROM person p ORDER BY p.person_id
        """,
    )
    rng = chooser.rng(FUTURE_BIRTH)
    rows = chooser.choose(FUTURE_BIRTH, person["no_conditions"].astype(bool))
    born = person["id"][rows]
    plan.add(
        FUTURE_BIRTH,
        "person_id",
        born,
        year_of_birth=_ints(today.year + FUTURE_MARGIN_YEARS + rng.integers(0, 10, len(rows))),
    )

    _plan_conditions(con, chooser, plan, rules, born)
    _plan_procedures(con, chooser, plan, born, future_day)
    _plan_drugs(con, chooser, plan, rules, born)
    _plan_measurements(con, chooser, plan, rules, born)

    _apply(con, plan)
    return {d.check_id: plan.counts.get(d.check_id, 0) for d in DEFECTS}


def _plan_conditions(
    con: duckdb.DuckDBPyConnection, chooser: _Chooser, plan: _Plan, rules: Any, born: I64
) -> None:
    rows = _fetch(
        con,
        f"""
        SELECT o.condition_occurrence_id AS id, o.person_id,
               COALESCE(p.gender_concept_id, 0) AS gender,
               COALESCE(p.year_of_birth, 0) AS year_of_birth,
               p.person_id IS NOT NULL AS has_person,
               v.visit_occurrence_id IS NOT NULL AS has_visit,
               COALESCE(v.visit_end_date - DATE '{_EPOCH}', 0) AS visit_end
        FROM condition_occurrence o
        LEFT JOIN person p ON p.person_id = o.person_id
        LEFT JOIN visit_occurrence v ON v.visit_occurrence_id = o.visit_occurrence_id
        ORDER BY o.condition_occurrence_id
        """,
    )
    usable = rows["has_person"].astype(bool) & ~np.isin(rows["person_id"], born)
    ids = rows["id"]
    sex_specific = frozenset(rules.female_only) | frozenset(rules.male_only)

    # Before birth: a day in a year before the year of birth; the row leaves its visit,
    # so it is not also outside the visit's dates.
    rng = chooser.rng(BEFORE_BIRTH)
    picked = chooser.choose(BEFORE_BIRTH, usable)
    years = rows["year_of_birth"][picked] - 1 - rng.integers(0, 5, len(picked))
    days = (years - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)
    plan.add(
        BEFORE_BIRTH,
        "condition_occurrence_id",
        ids[picked],
        condition_start_date=_dates(days + rng.integers(0, 365, len(picked))),
        visit_occurrence_id=pa.nulls(len(picked), pa.int32()),
    )

    # Non-standard: an ICD-10-CM condition concept (which keeps the Condition domain).
    non_standard = _concept_ids(
        con,
        "vocabulary_id = 'ICD10CM' AND domain_id = 'Condition' AND standard_concept IS NULL "
        "AND invalid_reason IS NULL",
        exclude=sex_specific,
    )
    _plan_concepts(chooser, plan, NON_STANDARD, ids, usable, non_standard)

    # Sex-implausible: a female-only condition for a man, a male-only one for a woman.
    conditions = _condition_concepts(rules)
    female_only = _sex_concepts(con, plan, rules.female_only & conditions)
    male_only = _sex_concepts(con, plan, rules.male_only & conditions)
    gender = rows["gender"]
    eligible = usable & (
        ((gender == c.MALE) & (len(female_only) > 0))
        | ((gender == c.FEMALE) & (len(male_only) > 0))
    )
    rng = chooser.rng(SEX_IMPLAUSIBLE)
    picked = chooser.choose(SEX_IMPLAUSIBLE, eligible)
    for_men = gender[picked] == c.MALE
    concept = np.where(
        for_men,
        _draw(rng, female_only, len(picked)),
        _draw(rng, male_only, len(picked)),
    )
    plan.add(
        SEX_IMPLAUSIBLE, "condition_occurrence_id", ids[picked], condition_concept_id=_ints(concept)
    )

    # Outside the visit: weeks after the visit ended.
    rng = chooser.rng(OUTSIDE_VISIT)
    picked = chooser.choose(OUTSIDE_VISIT, usable & rows["has_visit"].astype(bool))
    days = rows["visit_end"][picked] + VISIT_MARGIN_DAYS + rng.integers(0, 60, len(picked))
    plan.add(
        OUTSIDE_VISIT, "condition_occurrence_id", ids[picked], condition_start_date=_dates(days)
    )

    # Wrong domain: a standard drug concept.
    drugs = _concept_ids(
        con,
        "domain_id = 'Drug' AND standard_concept = 'S' AND invalid_reason IS NULL",
        exclude=sex_specific,
    )
    _plan_concepts(chooser, plan, WRONG_DOMAIN, ids, usable, drugs)


def _plan_concepts(
    chooser: _Chooser, plan: _Plan, defect: Defect, ids: I64, usable: Mask, concepts: I64
) -> None:
    picked = chooser.choose(defect, usable & (len(concepts) > 0))
    drawn = _draw(chooser.rng(defect), concepts, len(picked))
    plan.add(defect, "condition_occurrence_id", ids[picked], condition_concept_id=_ints(drawn))


def _plan_procedures(
    con: duckdb.DuckDBPyConnection,
    chooser: _Chooser,
    plan: _Plan,
    born: I64,
    future_day: int,
) -> None:
    rows = _fetch(
        con,
        """
        SELECT o.procedure_occurrence_id AS id, o.person_id,
               EXISTS (SELECT 1 FROM death d WHERE d.person_id = o.person_id) AS dead
        FROM procedure_occurrence o ORDER BY o.procedure_occurrence_id
        """,
    )
    ids = rows["id"]
    usable = ~np.isin(rows["person_id"], born)

    picked = chooser.choose(INVALID_CODE, usable)
    # Ids above every concept id (including those planting adds) are in no concept row;
    # below zero if that would leave the 32-bit range.
    top = max(
        _scalar(con, "SELECT COALESCE(max(concept_id), 0) FROM concept"),
        DEPRECATED_MEASUREMENT,
        *(row[0] for row in plan.concepts),
    )
    first = top + 1 if top + INVALID_IDS < 2**31 else -INVALID_IDS
    plan.add(
        INVALID_CODE,
        "procedure_occurrence_id",
        ids[picked],
        procedure_concept_id=_ints(first + np.arange(len(picked)) % INVALID_IDS),
    )

    # Future: years after today, for living persons (so not also after death).
    rng = chooser.rng(FUTURE_EVENT)
    picked = chooser.choose(FUTURE_EVENT, usable & ~rows["dead"].astype(bool))
    days = future_day + rng.integers(0, 365, len(picked))
    plan.add(FUTURE_EVENT, "procedure_occurrence_id", ids[picked], procedure_date=_dates(days))


def _plan_drugs(
    con: duckdb.DuckDBPyConnection, chooser: _Chooser, plan: _Plan, rules: Any, born: I64
) -> None:
    rows = _fetch(
        con,
        f"""
        SELECT o.drug_exposure_id AS id, o.person_id, o.drug_concept_id AS concept,
               o.drug_exposure_start_date - DATE '{_EPOCH}' AS start,
               o.drug_exposure_end_date - DATE '{_EPOCH}' AS finish,
               d.death_day IS NOT NULL AS dead,
               COALESCE(d.death_day, 0) AS death_day
        FROM drug_exposure o
        LEFT JOIN (
            SELECT person_id, min(death_date) - DATE '{_EPOCH}' AS death_day
            FROM death GROUP BY person_id
        ) d ON d.person_id = o.person_id
        ORDER BY o.drug_exposure_id
        """,
    )
    ids, start, finish = rows["id"], rows["start"], rows["finish"]
    usable = ~np.isin(rows["person_id"], born)
    key = "drug_exposure_id"

    picked = chooser.choose(ORPHAN, usable)
    top = _scalar(con, "SELECT COALESCE(max(person_id), 0) FROM person")
    plan.add(ORPHAN, key, ids[picked], person_id=_ints(top + 1 + np.arange(len(picked))))

    # After death: the whole exposure moved to months after the death.
    rng = chooser.rng(AFTER_DEATH)
    picked = chooser.choose(AFTER_DEATH, usable & rows["dead"].astype(bool))
    moved = rows["death_day"][picked] + DEATH_MARGIN_DAYS + rng.integers(0, 270, len(picked))
    plan.add(AFTER_DEATH, key, ids[picked], **_exposure(moved, start[picked], finish[picked]))

    rng = chooser.rng(END_BEFORE_START)
    picked = chooser.choose(END_BEFORE_START, usable)
    plan.add(
        END_BEFORE_START,
        key,
        ids[picked],
        drug_exposure_end_date=_dates(start[picked] - 1 - rng.integers(0, 30, len(picked))),
    )

    rng = chooser.rng(DAYS_SUPPLY)
    picked = chooser.choose(DAYS_SUPPLY, usable)
    plan.add(
        DAYS_SUPPLY, key, ids[picked], days_supply=_ints(400 + rng.integers(0, 600, len(picked)))
    )

    rng = chooser.rng(REFILLS)
    picked = chooser.choose(REFILLS, usable)
    plan.add(REFILLS, key, ids[picked], refills=_ints(50 + rng.integers(0, 50, len(picked))))

    # Before market: moved to before the first marketing of (the first of) its ingredients.
    marketed = _first_marketed(con, rules.first_marketed, rows["concept"])
    rng = chooser.rng(BEFORE_MARKET)
    picked = chooser.choose(BEFORE_MARKET, usable & (marketed >= 0))
    moved = marketed[picked] - 30 - rng.integers(0, 365, len(picked))
    plan.add(BEFORE_MARKET, key, ids[picked], **_exposure(moved, start[picked], finish[picked]))


def _exposure(moved: I64, start: I64, finish: I64) -> dict[str, pa.Array]:
    """New start and end dates for exposures moved to start on ``moved``, same length."""
    return {
        "drug_exposure_start_date": _dates(moved),
        "drug_exposure_end_date": _dates(moved + (finish - start)),
    }


def _plan_measurements(
    con: duckdb.DuckDBPyConnection, chooser: _Chooser, plan: _Plan, rules: Any, born: I64
) -> None:
    rows = _fetch(
        con,
        """
        SELECT measurement_id AS id, person_id, measurement_concept_id AS concept,
               COALESCE(unit_concept_id, 0) AS unit
        FROM measurement ORDER BY measurement_id
        """,
    )
    ids = rows["id"]
    usable = ~np.isin(rows["person_id"], born)

    # Impossible values: above the range's high by at least its width.
    ranges = {(int(r.concept_id), int(r.unit_concept_id)): r for r in rules.ranges}
    pairs, inverse = np.unique(
        np.stack([rows["concept"], rows["unit"]]), axis=1, return_inverse=True
    )
    high = np.array([_high(ranges, pair) for pair in pairs.T.tolist()], dtype=np.float64)
    width = np.array([_width(ranges, pair) for pair in pairs.T.tolist()], dtype=np.float64)
    row_high = high[inverse.reshape(-1)] if len(ids) else np.zeros(0)
    row_width = width[inverse.reshape(-1)] if len(ids) else np.zeros(0)
    rng = chooser.rng(IMPOSSIBLE_VALUE)
    picked = chooser.choose(IMPOSSIBLE_VALUE, usable & ~np.isnan(row_high))
    value = np.round(row_high[picked] + row_width[picked] * (1 + rng.random(len(picked))), 1)
    plan.add(
        IMPOSSIBLE_VALUE,
        "measurement_id",
        ids[picked],
        value_as_number=pa.array(value, type=pa.float64()),
    )

    picked = chooser.choose(DEPRECATED, usable)
    plan.add(
        DEPRECATED,
        "measurement_id",
        ids[picked],
        measurement_concept_id=_ints(np.full(len(picked), DEPRECATED_MEASUREMENT)),
    )
    plan.concepts.append(
        (
            DEPRECATED_MEASUREMENT,
            "Deprecated measurement (planted defect)",
            "Measurement",
            "Accord",
            "Lab Test",
            None,
            "ACCORD-DEPRECATED-1",
            date(1970, 1, 1),
            date(2000, 12, 31),
            "D",
        )
    )


def _high(ranges: dict[tuple[int, int], Any], pair: Sequence[int]) -> float:
    found = ranges.get((int(pair[0]), int(pair[1])))
    return math.nan if found is None else float(found.high)


def _width(ranges: dict[tuple[int, int], Any], pair: Sequence[int]) -> float:
    found = ranges.get((int(pair[0]), int(pair[1])))
    return math.nan if found is None else max(1.0, float(found.high) - float(found.low))


# --- reference data -------------------------------------------------------------------


def _rules() -> Any:
    from accord.quality.plausibility import plausibility_rules

    return plausibility_rules()


def _condition_concepts(rules: Any) -> frozenset[int]:
    """The sex-specific concepts that are conditions (the rules also list procedures),
    per the domain each entry of the shipped rules file gives."""
    from importlib import resources

    try:
        text = resources.files("accord.quality").joinpath("plausibility.json").read_text("utf-8")
        entries = json.loads(text)["sex_specific"]
        return frozenset(
            int(e["concept_id"]) for e in entries if e.get("domain", "Condition") == "Condition"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return frozenset(rules.female_only) | frozenset(rules.male_only)


def _concept_ids(con: duckdb.DuckDBPyConnection, where: str, *, exclude: frozenset[int]) -> I64:
    found = _fetch(con, f"SELECT concept_id FROM concept WHERE {where} ORDER BY concept_id")
    ids = found["concept_id"]
    return ids[~np.isin(ids, np.array(sorted(exclude), dtype=np.int64))]


def _sex_concepts(con: duckdb.DuckDBPyConnection, plan: _Plan, wanted: frozenset[int]) -> I64:
    """Those of ``wanted`` usable in condition_occurrence without breaking another
    check: standard, valid condition concepts of the member's vocabulary or, if it has
    none of them, all of them, added to concept as such."""
    ids = np.array(sorted(int(i) for i in wanted), dtype=np.int64)
    present = _fetch(
        con,
        "SELECT concept_id, (domain_id = 'Condition' AND standard_concept = 'S' "
        "AND invalid_reason IS NULL) AS fit FROM concept ORDER BY concept_id",
    )
    fit = ids[np.isin(ids, present["concept_id"][present["fit"]])]
    missing = ids[~np.isin(ids, present["concept_id"])]
    if len(fit) or not len(missing):
        return fit
    for concept_id in missing.tolist():
        plan.concepts.append(
            (
                concept_id,
                f"Sex-specific condition {concept_id} (added with planted defects)",
                "Condition",
                "SNOMED",
                "Disorder",
                "S",
                str(concept_id),
                date(1970, 1, 1),
                date(2099, 12, 31),
                None,
            )
        )
    return missing


def _first_marketed(
    con: duckdb.DuckDBPyConnection, first_marketed: dict[int, date], concepts: I64
) -> I64:
    """Per drug row, the day its earliest-marketed ingredient came out, or -1 if none is
    known. An ingredient is the concept itself or an ancestor in concept_ancestor."""
    marketed = {int(k): _day(v) for k, v in first_marketed.items()}
    if not marketed or len(concepts) == 0:
        return np.full(len(concepts), -1, dtype=np.int64)
    ancestry = _fetch(
        con, "SELECT descendant_concept_id, ancestor_concept_id FROM concept_ancestor"
    )
    unique, inverse = np.unique(concepts, return_inverse=True)
    day = np.full(len(unique), -1, dtype=np.int64)
    for index, concept in enumerate(unique.tolist()):
        ancestors = ancestry["ancestor_concept_id"][ancestry["descendant_concept_id"] == concept]
        days = [marketed[a] for a in {concept, *ancestors.tolist()} if a in marketed]
        if days:
            day[index] = min(days)
    return day[inverse.reshape(-1)]


# --- applying -------------------------------------------------------------------------


def _apply(con: duckdb.DuckDBPyConnection, plan: _Plan) -> None:
    own_transaction = True
    try:
        con.execute("BEGIN TRANSACTION")
    except duckdb.TransactionException:
        own_transaction = False  # the caller's transaction holds the changes
    try:
        if plan.concepts:
            con.executemany(
                "INSERT INTO concept (concept_id, concept_name, domain_id, vocabulary_id, "
                "concept_class_id, standard_concept, concept_code, valid_start_date, "
                "valid_end_date, invalid_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                plan.concepts,
            )
        for defect, key, columns in plan.updates:
            table = pa.table(columns)
            assignments = ", ".join(f"{name} = p.{name}" for name in columns if name != "id")
            con.register(_VIEW, table)
            try:
                con.execute(
                    f"UPDATE {defect.table} SET {assignments} FROM {_VIEW} AS p "
                    f"WHERE {defect.table}.{key} = p.id"
                )
            finally:
                con.unregister(_VIEW)
        if own_transaction:
            con.execute("COMMIT")
    except BaseException:
        if own_transaction:
            con.execute("ROLLBACK")
        raise


# --- small helpers --------------------------------------------------------------------


def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, NDArray[Any]]:
    """The query's columns as numpy arrays (booleans as bool, numbers as int64)."""
    columns = con.execute(sql).fetchnumpy()
    return {
        name: np.asarray(values, dtype=np.bool_ if values.dtype == np.bool_ else np.int64)
        for name, values in columns.items()
    }


def _scalar(
    con: duckdb.DuckDBPyConnection, sql: str, parameters: list[object] | None = None
) -> int:
    row = con.execute(sql, parameters or []).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def _draw(rng: np.random.Generator, choices: I64, size: int) -> I64:
    if len(choices) == 0:
        return np.zeros(size, dtype=np.int64)
    return np.asarray(rng.choice(choices, size=size), dtype=np.int64)


def _day(day: date) -> int:
    return (day - _EPOCH).days


def _dates(days: NDArray[Any]) -> pa.Array:
    return pa.array(np.asarray(days, dtype=np.int32)).cast(pa.date32())


def _ints(values: NDArray[Any]) -> pa.Array:
    return pa.array(np.asarray(values, dtype=np.int32), type=pa.int32())


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
