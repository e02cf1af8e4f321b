"""Small CDMs for tests: row builders, and engines that load rows and run queries.

Rows are plain dicts per table, so a spec case reads as data::

    {"person": [person(1, born=1970)], "condition_occurrence": [condition(1, HYPERTENSION)]}

Each builder fills the CDM's NOT NULL columns with neutral values so a case names only
what matters to it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import duckdb

from accord.cdm import create_cdm
from accord.query import CountPersons, Dialect
from accord.query.run import run_count

Row = dict[str, Any]
Tables = Mapping[str, Sequence[Row]]

MALE = 8507
FEMALE = 8532
EHR = 32817  # type concept: the record came from an EHR
EVENT_DATE = date(2020, 1, 1)

_ids = itertools.count(1)


def person(person_id: int, *, born: int, sex: int = MALE) -> Row:
    return {
        "person_id": person_id,
        "gender_concept_id": sex,
        "year_of_birth": born,
        "race_concept_id": 0,
        "ethnicity_concept_id": 0,
    }


def condition(person_id: int, concept_id: int, *, on: date = EVENT_DATE) -> Row:
    return {
        "condition_occurrence_id": next(_ids),
        "person_id": person_id,
        "condition_concept_id": concept_id,
        "condition_start_date": on,
        "condition_type_concept_id": EHR,
    }


def drug(person_id: int, concept_id: int, *, on: date = EVENT_DATE) -> Row:
    return {
        "drug_exposure_id": next(_ids),
        "person_id": person_id,
        "drug_concept_id": concept_id,
        "drug_exposure_start_date": on,
        "drug_exposure_end_date": on,
        "drug_type_concept_id": EHR,
    }


def measurement(
    person_id: int, concept_id: int, value: float | None = None, *, on: date = EVENT_DATE
) -> Row:
    return {
        "measurement_id": next(_ids),
        "person_id": person_id,
        "measurement_concept_id": concept_id,
        "measurement_date": on,
        "measurement_type_concept_id": EHR,
        "value_as_number": value,
    }


def ancestor(ancestor_id: int, descendant_id: int, levels: int = 1) -> Row:
    return {
        "ancestor_concept_id": ancestor_id,
        "descendant_concept_id": descendant_id,
        "min_levels_of_separation": levels,
        "max_levels_of_separation": levels,
    }


class TestEngine:
    """A CDM on one engine that tests fill with rows and ask for counts."""

    __test__ = False  # not a test class, whatever its name says to pytest
    dialect: Dialect
    placeholder: str

    def __init__(self, connection: Any, schema: str | None = None) -> None:
        self.connection = connection
        self.schema = schema
        self._loaded: set[str] = set()

    def load(self, tables: Tables) -> None:
        """Replace what earlier ``load`` calls put in the CDM with ``tables``."""
        for table in sorted(self._loaded):
            self.execute(f"DELETE FROM {self.qualified(table)}")
        self._loaded = set()
        for table, rows in tables.items():
            if rows:
                self.insert(table, rows)
                self._loaded.add(table)

    def insert(self, table: str, rows: Sequence[Row]) -> None:
        columns = list(rows[0])
        values = ", ".join([self.placeholder] * len(columns))
        sql = f"INSERT INTO {self.qualified(table)} ({', '.join(columns)}) VALUES ({values})"
        self.executemany(sql, [tuple(row[c] for c in columns) for row in rows])

    def count(self, query: CountPersons) -> int:
        return run_count(self.connection, query, self.dialect, schema=self.schema)

    def run_sql(self, sql: str) -> int:
        row = self.connection.execute(sql).fetchone()
        return int(row[0])

    def qualified(self, table: str) -> str:
        return f'"{self.schema}".{table}' if self.schema else table

    def execute(self, sql: str) -> None:
        self.connection.execute(sql)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.connection.close()


class DuckDBTestEngine(TestEngine):
    dialect: Dialect = "duckdb"
    placeholder = "?"

    @classmethod
    def create(cls) -> DuckDBTestEngine:
        connection = duckdb.connect(":memory:")
        create_cdm(connection, "duckdb")
        return cls(connection)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.connection.executemany(sql, rows)


class PostgresTestEngine(TestEngine):
    dialect: Dialect = "postgres"
    placeholder = "%s"

    @classmethod
    def create(cls, dsn: str, schema: str) -> PostgresTestEngine:
        import psycopg

        connection = psycopg.connect(dsn, autocommit=True)
        # Without foreign keys, as on DuckDB: a case names only the rows that matter to
        # it, not every concept those rows refer to.
        create_cdm(connection, "postgres", schema=schema, foreign_keys=False)
        return cls(connection, schema)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self.connection.cursor() as cursor:
            cursor.executemany(sql, rows)
