"""The consortium's combined answers equal the same statistics of all members' rows pooled.

Three synthetic members answer each analysis through the node's executor, and the hub
checks and combines what they release. The same figures are then computed directly from
the members' DuckDB files with plain SQL, pooled, and numpy, pandas or lifelines.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter

from accord.analysis import glm
from accord.hub.aggregation import accept_result, secure_total, summarise
from accord.hub.store import AssignmentView, TaskView
from accord.node import answers
from accord.node.answers import Refusal, Release
from accord.node.config import DatabaseConfig, DisclosureConfig
from accord.node.executor import MemberDatabase, execute
from accord.privacy.disclosure import SmallCellProfile
from accord.quality.gate import submit_database
from accord.query import builders as q
from accord.synth import generate_consortium
from accord.vocab import concepts as c

AS_OF = date(2025, 12, 31)
MEMBERS = 3
KEY = bytes(range(32))
# Threshold 1 is below what a node's configuration accepts; built directly here so that
# nothing is suppressed or rounded and combined figures can be compared exactly.
EXACT = DisclosureConfig.model_construct(threshold=1, rounding=1)
DEFAULT = DisclosureConfig()
HIGH = DisclosureConfig(threshold=10_000)

ADULTS = q.cohort(q.age_between(18, 90), as_of=AS_OF)
T2DM = q.cohort(as_of=AS_OF, entry=q.entry(q.has_condition(c.TYPE_2_DIABETES)))
HYPERTENSIVE = q.has_condition(c.HYPERTENSION)
AGE_EDGES = [18, 30, 45, 60, 75, 90]
HBA1C_EDGES = list(np.arange(3.0, 12.01, 0.5))
HBA1C_LATEST = q.measurement_value(c.HBA1C)
HBA1C_MEAN = q.measurement_value(c.HBA1C, summary="mean")
MODEL = q.glm(
    ADULTS,
    outcome=q.indicator(q.has_condition(c.TYPE_2_DIABETES)),
    covariates=[q.age(), q.indicator(HYPERTENSIVE)],
    family="binomial",
).with_beta([-4.0, 0.03, 0.5])


def _in_set(column: str, concept: int) -> str:
    return (
        f"({column} = {concept} OR {column} IN (SELECT descendant_concept_id "
        f"FROM concept_ancestor WHERE ancestor_concept_id = {concept}))"
    )


PERSONS_SQL = f"""
SELECT person_id, gender_concept_id AS sex, 2025 - year_of_birth AS age,
       person_source_value AS national_id,
       EXISTS (SELECT 1 FROM condition_occurrence co WHERE co.person_id = p.person_id
               AND co.condition_start_date <= DATE '{AS_OF}'
               AND {_in_set("co.condition_concept_id", c.HYPERTENSION)}) AS hypertension
FROM person p
"""
HBA1C_SQL = f"""
SELECT person_id, measurement_date AS day, value_as_number AS value FROM measurement
WHERE value_as_number IS NOT NULL AND measurement_date <= DATE '{AS_OF}'
  AND {_in_set("measurement_concept_id", c.HBA1C)}
"""
FOLLOW_UP_SQL = f"""
WITH entries AS (
  SELECT co.person_id, MIN(co.condition_start_date) AS index_date FROM condition_occurrence co
  WHERE co.condition_start_date <= DATE '{AS_OF}'
    AND {_in_set("co.condition_concept_id", c.TYPE_2_DIABETES)}
    AND EXISTS (SELECT 1 FROM observation_period op WHERE op.person_id = co.person_id AND
      co.condition_start_date BETWEEN observation_period_start_date AND observation_period_end_date)
  GROUP BY co.person_id)
SELECT e.index_date,
  (SELECT MIN(drug_exposure_start_date) FROM drug_exposure de
   WHERE de.person_id = e.person_id AND {_in_set("de.drug_concept_id", c.BIGUANIDES)}
     AND drug_exposure_start_date BETWEEN e.index_date + 1 AND DATE '{AS_OF}') AS event_date,
  (SELECT MAX(observation_period_end_date) FROM observation_period op WHERE op.person_id =
     e.person_id AND e.index_date BETWEEN observation_period_start_date
                                      AND observation_period_end_date) AS period_end
FROM entries e
"""


@dataclass(frozen=True)
class Consortium:
    databases: list[MemberDatabase]
    persons: pd.DataFrame  # one row per person of each member
    follow_up: pd.DataFrame  # one row per person entering the T2DM cohort

    @property
    def adults(self) -> pd.DataFrame:
        return self.persons[self.persons["age"].between(18, 90)]


def _pooled(path: Path, member: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    with duckdb.connect(str(path), read_only=True) as con:
        persons = con.sql(PERSONS_SQL).df()
        hba1c = con.sql(HBA1C_SQL).df()
        follow_up = con.sql(FOLLOW_UP_SQL).df()
    # "latest": the largest value on the latest day; "mean": the mean of every value.
    ordered = hba1c.sort_values(["person_id", "day", "value"])
    latest = ordered.groupby("person_id")["value"].last().rename("hba1c_latest")
    means = hba1c.groupby("person_id")["value"].mean().rename("hba1c_mean")
    persons = persons.join(latest, on="person_id").join(means, on="person_id")
    return persons.assign(member=member), follow_up.assign(member=member)


def _reformat_shared_ids(directory: Path, files: list[str]) -> None:
    """Write the ids the second member shares with the others as ' 123-456 7890 ' (the
    same patients once normalised), and drop or blank a few ids at the third member."""
    with duckdb.connect(str(directory / files[1])) as con:
        con.execute(f"ATTACH '{directory / files[0]}' AS a (READ_ONLY)")
        con.execute(f"ATTACH '{directory / files[2]}' AS b (READ_ONLY)")
        con.execute(
            "UPDATE person SET person_source_value = ' ' || substr(person_source_value, 1, 3)"
            " || '-' || substr(person_source_value, 4, 3) || ' ' || "
            "substr(person_source_value, 7) || ' ' WHERE person_source_value IN "
            "(SELECT person_source_value FROM a.person UNION SELECT person_source_value "
            "FROM b.person)"
        )
    with duckdb.connect(str(directory / files[2])) as con:
        con.execute(
            "UPDATE person SET person_source_value = CASE WHEN person_id % 2 = 0 THEN NULL "
            "ELSE '  ' END WHERE person_id IN (SELECT person_id FROM person "
            "WHERE year_of_birth BETWEEN 1950 AND 1990 ORDER BY person_id LIMIT 14)"
        )


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    directory = tmp_path_factory.mktemp("federated")
    manifest = generate_consortium(directory, members=MEMBERS, persons_per_member=2000, seed=23)
    files = [m.db_file for m in manifest.members]
    assert all(sum(m.overlaps.values()) > 0 for m in manifest.members)
    _reformat_shared_ids(directory, files)
    for name in files:
        submit_database(directory / name, kind="synth", source="test")
    parts = [_pooled(directory / name, i) for i, name in enumerate(files)]
    databases = [MemberDatabase(DatabaseConfig(path=str(directory / name))) for name in files]
    yield Consortium(
        databases,
        pd.concat([p for p, _ in parts], ignore_index=True),
        pd.concat([f for _, f in parts], ignore_index=True),
    )
    for database in databases:
        database.close()


def released(consortium: Consortium, query: Any, config: DisclosureConfig) -> list[dict[str, Any]]:
    """Each member's result as the hub accepts it, after a trip through JSON."""
    analysis = query.to_json()
    results = []
    for database in consortium.databases:
        result = execute(analysis, database, config, patient_key=KEY)
        results.append(accept_result(analysis, json.loads(json.dumps(result))))
    return results


def combined(consortium: Consortium, query: Any, config: DisclosureConfig) -> dict[str, Any]:
    results = released(consortium, query, config)
    done = tuple(AssignmentView(f"m{i}", None, "done", r, None) for i, r in enumerate(results))
    summary = summarise(TaskView("t", "researcher", "", "done", query.to_json(), done))
    assert summary["answered"] == MEMBERS
    return summary


def test_count_by_sex_and_age_group_equals_the_pooled_crosstab(consortium: Consortium) -> None:
    adults = consortium.adults
    truth = pd.crosstab(adults["sex"], adults["age"] // 10 * 10).stack()
    expected = {(int(s), int(a)): int(n) for (s, a), n in truth.items() if n}
    cells = combined(consortium, q.count_by(ADULTS, q.sex(), q.age_group(10)), EXACT)["cells"]
    assert {tuple(cell["key"]): cell["value"] for cell in cells["cells"]} == expected
    assert all(cell["suppressed"] == 0 for cell in cells["cells"])


def test_count_by_under_the_default_profile_is_within_its_bounds(consortium: Consortium) -> None:
    query = q.count_by(ADULTS, q.sex(), q.age_group(10))
    for result in released(consortium, query, DEFAULT):
        counts = [cell["count"] for cell in result["cells"]["cells"]]
        assert all(n is None or n == 0 or (n >= 10 and n % 5 == 0) for n in counts)
    adults = consortium.adults
    truth = adults.groupby(["sex", adults["age"] // 10 * 10]).size()
    cells = combined(consortium, query, DEFAULT)["cells"]["cells"]
    assert {tuple(cell["key"]) for cell in cells} == {(int(s), int(a)) for s, a in truth.index}
    assert any(cell["suppressed"] for cell in cells)  # the bounds below are exercised
    for cell in cells:
        error = cell["value"] - int(truth[tuple(cell["key"])])
        assert -(MEMBERS * 2 + cell["suppressed"] * 9) <= error <= MEMBERS * 2


def test_histogram_equals_numpy_on_pooled_ages(consortium: Consortium) -> None:
    hist = combined(consortium, q.histogram(ADULTS, q.age(), AGE_EDGES), EXACT)["histogram"]
    expected, _ = np.histogram(consortium.adults["age"], bins=AGE_EDGES)
    assert [bin_["value"] for bin_ in hist["counts"]] == expected.tolist()
    assert (consortium.adults["age"] == AGE_EDGES[-1]).any()  # the closed last bin is used
    assert [hist[k]["value"] for k in ("below", "above", "missing")] == [0, 0, 0]


def test_summary_equals_pandas_on_pooled_values(consortium: Consortium) -> None:
    query = q.summary(ADULTS, HBA1C_LATEST, HBA1C_EDGES)
    summary = combined(consortium, query, EXACT)["summary"]
    values = consortium.adults["hba1c_latest"]
    known = values.dropna().to_numpy()
    assert HBA1C_EDGES[0] <= known.min() <= known.max() <= HBA1C_EDGES[-1]
    assert (summary["n"], summary["missing"]) == (len(known), int(values.isna().sum()))
    np.testing.assert_allclose(summary["mean"], known.mean(), rtol=1e-10)
    np.testing.assert_allclose(summary["sd"], np.std(known, ddof=1), rtol=1e-10)
    width = HBA1C_EDGES[1] - HBA1C_EDGES[0]
    for quantile in summary["quantiles"]:
        assert abs(quantile["value"] - np.quantile(known, quantile["p"])) <= width


def test_correlation_equals_numpy_on_pooled_complete_cases(consortium: Consortium) -> None:
    query = q.correlation(ADULTS, q.age(), q.indicator(HYPERTENSIVE), HBA1C_MEAN)
    result = combined(consortium, query, EXACT)["correlation"]
    rows = consortium.adults[["age", "hypertension", "hba1c_mean"]].astype(float).dropna()
    assert result["n"] == len(rows)
    np.testing.assert_allclose(result["matrix"], np.corrcoef(rows.to_numpy().T), rtol=1e-10)
    np.testing.assert_allclose(result["mean"], rows.mean().to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(result["sd"], rows.std(ddof=1).to_numpy(), rtol=1e-10)


def _durations(follow_up: pd.DataFrame, horizon: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Days from index to the event or censoring, rounded up to the grid; beyond the
    horizon, censored at it."""
    end = follow_up["period_end"].clip(upper=pd.Timestamp(AS_OF))
    happened = follow_up["event_date"].notna() & (follow_up["event_date"] <= end)
    stop = follow_up["event_date"].where(happened, end)
    days = (stop - follow_up["index_date"]).dt.days.to_numpy()
    grid = np.ceil(days / step) * step
    beyond = days > horizon
    return np.where(beyond, horizon, grid), (happened.to_numpy() & ~beyond).astype(int)


@pytest.mark.parametrize("step", [30, 90])
def test_kaplan_meier_equals_lifelines_on_pooled_durations(
    consortium: Consortium, step: int
) -> None:
    query = q.kaplan_meier(T2DM, q.has_drug(c.BIGUANIDES), horizon_days=720, step_days=step)
    result = combined(consortium, query, EXACT)
    durations, events = _durations(consortium.follow_up, 720, step)
    assert result["counts"]["at_risk"][0] == len(durations)
    assert sum(result["counts"]["events"]) == events.sum() > 0
    fitter = KaplanMeierFitter().fit(durations, events)
    times = np.arange(0, 721, step)
    expected = fitter.survival_function_at_times(times).to_numpy()
    assert result["curve"]["times"] == times.tolist()
    np.testing.assert_allclose(result["curve"]["survival"], expected, rtol=0, atol=1e-12)


def test_distinct_persons_counts_shared_patients_once(consortium: Consortium) -> None:
    ids = consortium.adults["national_id"].fillna("")
    normalised = ids.str.strip().str.upper().str.replace(r"[\s\-]+", "", regex=True)
    with_id = normalised[normalised != ""]
    truth, naive = with_id.nunique(), len(with_id)
    written_apart = ids[normalised != ""].nunique() - truth
    # Patients are shared, and the bound below would not hide ids left unnormalised.
    assert naive - truth > written_apart > 3 * 1.04 / 2**8 * truth
    result = combined(consortium, q.distinct_persons(ADULTS, precision=16), EXACT)
    estimate = result["distinct"]
    error = estimate["relative_standard_error"]
    assert abs(estimate["value"] - truth) <= 3 * error * truth
    assert estimate["value"] < naive
    assert result["without_id"]["value"] == len(ids) - len(with_id) > 0


def _figures(kind: str, summary: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a combined or securely summed result, whatever its form."""
    if kind == "count_persons":
        return {"count": summary["total"]["value"]}
    if kind == "glm_step":
        return {k: v for k, v in summary["part"].items() if k != "family"}
    if kind == "kaplan_meier":
        counts = {k: summary["counts"][k] for k in ("at_risk", "events", "censored")}
        return {**counts, "survival": summary["curve"]["survival"]}
    if kind == "correlation":
        return {k: summary["correlation"][k] for k in ("n", "mean", "sd", "matrix")}
    hist = summary["histogram"]  # combined cells carry their value beside a display
    cells = {k: hist[k] for k in ("counts", "below", "above", "missing")}
    cells = json.loads(json.dumps(cells), object_hook=lambda d: d.get("value", d))
    if kind == "summary":
        quantiles = [x["value"] for x in summary["summary"]["quantiles"]]
        moments = {k: summary["summary"][k] for k in ("n", "mean", "sd")}
        return {**cells, **moments, "quantiles": quantiles}
    return cells


def _assert_same(secure: Any, plain: Any) -> None:
    if isinstance(plain, dict):
        assert secure.keys() == plain.keys()
        for key in plain:
            _assert_same(secure[key], plain[key])
    elif isinstance(plain, list):
        assert len(secure) == len(plain)
        for a, b in zip(secure, plain, strict=True):
            _assert_same(a, b)
    elif isinstance(plain, int):
        assert secure == plain
    else:
        assert math.isclose(secure, plain, rel_tol=1e-10, abs_tol=1e-12)


SECURE_QUERIES = {
    "count_persons": q.count_persons(ADULTS),
    "histogram": q.histogram(ADULTS, q.age(), AGE_EDGES),
    "summary": q.summary(ADULTS, HBA1C_LATEST, HBA1C_EDGES),
    "correlation": q.correlation(ADULTS, q.age(), q.indicator(HYPERTENSIVE), HBA1C_MEAN),
    "glm_step": MODEL,
    "kaplan_meier": q.kaplan_meier(T2DM, q.has_drug(c.BIGUANIDES), horizon_days=720),
}


@pytest.mark.parametrize("kind", SECURE_QUERIES)
def test_secure_sum_gives_the_figures_of_the_per_member_path(
    consortium: Consortium, kind: str
) -> None:
    query = SECURE_QUERIES[kind]
    analysis = query.to_json()
    contributions = [
        execute(analysis, database, EXACT, patient_key=KEY, secure=True)
        for database in consortium.databases
    ]
    total = np.sum([np.asarray(r["vector"]) for r in contributions], axis=0)
    profiles = [SmallCellProfile.from_json(r["profile"]) for r in contributions]
    secure = secure_total(analysis, total, profiles)
    assert "withheld" not in secure
    if kind == "glm_step":
        parts = [glm.GlmPart.from_json(r["part"]) for r in released(consortium, query, EXACT)]
        plain = {"part": glm.combine(parts).to_json()}
    else:
        plain = combined(consortium, query, EXACT)
    _assert_same(_figures(kind, secure), _figures(kind, plain))


REFUSED = {
    "summary": (q.summary(ADULTS, HBA1C_LATEST, HBA1C_EDGES), set()),
    "correlation": (SECURE_QUERIES["correlation"], {"3"}),  # the query's 3 variables
    "glm_step": (MODEL, {"3"}),  # the model's 3 parameters
    "kaplan_meier": (SECURE_QUERIES["kaplan_meier"], set()),
    "distinct_persons": (q.distinct_persons(ADULTS), set()),
}


@pytest.mark.parametrize("kind", REFUSED)
def test_a_high_threshold_refuses_without_naming_patient_data(
    consortium: Consortium, kind: str
) -> None:
    query, stated = REFUSED[kind]
    reasons = []
    for database in consortium.databases:
        try:
            result = execute(query.to_json(), database, HIGH, patient_key=KEY)
        except Refusal as refusal:
            reasons.append(str(refusal))
        else:  # a member with no values releases empty moments, as a count of 0
            assert result["moments"]["n"] == 0
    assert len(reasons) >= MEMBERS - 1
    for reason in reasons:
        assert set(re.findall(r"\d+", reason)) <= {str(HIGH.threshold), *stated}, reason


def test_a_high_threshold_suppresses_every_count(consortium: Consortium) -> None:
    counts = released(consortium, q.count_persons(ADULTS), HIGH)
    tables = released(consortium, q.count_by(ADULTS, q.sex(), q.age_group(20)), HIGH)
    hists = [r["histogram"] for r in released(consortium, SECURE_QUERIES["histogram"], HIGH)]
    assert all(r["disclosed"]["value"] is None for r in counts)
    assert all(cell["count"] is None for r in tables for cell in r["cells"]["cells"])
    assert all(n is None for hist in hists for n in hist["counts"])
    assert all(h[k] in (0, None) for h in hists for k in ("below", "above", "missing"))


def test_a_survival_grid_of_single_days_is_refused_where_a_day_has_few_events(
    consortium: Consortium,
) -> None:
    query = q.kaplan_meier(T2DM, q.has_drug(c.BIGUANIDES), horizon_days=180, step_days=1)
    refused = 0
    for i, database in enumerate(consortium.databases):
        here = consortium.follow_up[consortium.follow_up["member"] == i]
        durations, events = _durations(here, 180, 1)
        per_day = np.bincount(durations[events == 1].astype(int))
        if not ((per_day > 0) & (per_day < 10)).any():
            execute(query.to_json(), database, DEFAULT, patient_key=KEY)
            continue
        with pytest.raises(Refusal, match="fewer than 10 events") as refusal:
            execute(query.to_json(), database, DEFAULT, patient_key=KEY)
        assert set(re.findall(r"\d+", str(refusal.value))) == {"10"}
        refused += 1
    assert refused > 0


def test_an_id_of_only_separators_counts_as_no_id() -> None:
    rows = [(" - ",), *((f"{i:010d}",) for i in range(20))]
    profile = SmallCellProfile("exact", threshold=1, rounding=1)
    result = answers.distinct_persons(q.distinct_persons(ADULTS), rows, Release(profile, KEY))
    assert result["without_id"]["value"] == 1
