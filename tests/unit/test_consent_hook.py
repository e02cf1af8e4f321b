"""The consent hook: whatever predicate it gives is part of every cohort compiled with it,
so persons outside it are counted by no analysis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import duckdb
import pytest

from accord.query import compile_query
from accord.query.builders import (
    age,
    cohort,
    count_by,
    count_persons,
    entry,
    has_condition,
    histogram,
    sex,
)
from accord.query.compiler import ConsentTable
from accord.query.run import run_count, run_rows
from cdm_testing import DuckDBTestEngine, condition, observation_period, person

AS_OF = date(2025, 12, 31)
DIABETES = 900_010
CONSENTED = ConsentTable("accord_consent")


@pytest.fixture
def connection() -> Iterator[duckdb.DuckDBPyConnection]:
    engine = DuckDBTestEngine.create()
    engine.load(
        {
            "person": [person(1, born=1960), person(2, born=1970), person(3, born=1980)],
            "condition_occurrence": [condition(i, DIABETES) for i in (1, 2, 3)],
            "observation_period": [
                observation_period(i, date(2010, 1, 1), AS_OF) for i in (1, 2, 3)
            ],
        }
    )
    engine.execute("CREATE TABLE accord_consent (person_id BIGINT)")
    engine.execute("INSERT INTO accord_consent VALUES (1), (3)")
    yield engine.connection
    engine.close()


def test_only_consenting_persons_are_counted(connection: duckdb.DuckDBPyConnection) -> None:
    everyone = count_persons(cohort(has_condition(DIABETES), as_of=AS_OF))
    assert run_count(connection, everyone, "duckdb") == 3
    assert run_count(connection, everyone, "duckdb", consent=CONSENTED) == 2
    entered = count_persons(cohort(as_of=AS_OF, entry=entry(has_condition(DIABETES))))
    assert run_count(connection, entered, "duckdb", consent=CONSENTED) == 2


def test_every_analysis_reads_only_consenting_persons(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    diabetes = cohort(has_condition(DIABETES), as_of=AS_OF)
    strata = run_rows(connection, count_by(diabetes, sex()), "duckdb", consent=CONSENTED)
    assert sum(n for *_, n in strata) == 2
    ages = run_rows(connection, histogram(diabetes, age(), [0, 100]), "duckdb", consent=CONSENTED)
    assert sorted(a for (a,) in ages) == [45, 65]


@pytest.mark.parametrize("dialect", ["duckdb", "postgres", "spark"])
def test_the_hook_is_in_the_sql_of_every_engine(dialect: str) -> None:
    query = count_persons(cohort(has_condition(DIABETES), as_of=AS_OF))
    sql = compile_query(query, dialect, consent=CONSENTED)  # type: ignore[arg-type]
    assert "accord_consent" in sql
    assert "accord_consent" not in compile_query(query, dialect)  # type: ignore[arg-type]
