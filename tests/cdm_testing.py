"""Small CDMs for tests: row builders, and engines that load rows and run queries.

Rows are plain dicts per table, so a spec case reads as data::

    {"person": [person(1, born=1970)], "condition_occurrence": [condition(1, HYPERTENSION)]}

Each builder fills the CDM's NOT NULL columns with neutral values so a case names only
what matters to it.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from sqlglot import exp

from accord.cdm import arrow_schema, create_cdm, load_spec
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
    person_id: int,
    concept_id: int,
    value: float | None = None,
    *,
    on: date = EVENT_DATE,
    unit: int | None = None,
) -> Row:
    return {
        "measurement_id": next(_ids),
        "person_id": person_id,
        "measurement_concept_id": concept_id,
        "measurement_date": on,
        "measurement_type_concept_id": EHR,
        "value_as_number": value,
        "unit_concept_id": unit,
    }


def procedure(person_id: int, concept_id: int, *, on: date = EVENT_DATE) -> Row:
    return {
        "procedure_occurrence_id": next(_ids),
        "person_id": person_id,
        "procedure_concept_id": concept_id,
        "procedure_date": on,
        "procedure_type_concept_id": EHR,
    }


def visit(person_id: int, concept_id: int, *, on: date = EVENT_DATE) -> Row:
    """A visit of kind ``concept_id`` (inpatient, outpatient, ...) that ends the day it
    starts."""
    return {
        "visit_occurrence_id": next(_ids),
        "person_id": person_id,
        "visit_concept_id": concept_id,
        "visit_start_date": on,
        "visit_end_date": on,
        "visit_type_concept_id": EHR,
    }


def observation(
    person_id: int,
    concept_id: int,
    value: float | None = None,
    *,
    on: date = EVENT_DATE,
    unit: int | None = None,
) -> Row:
    return {
        "observation_id": next(_ids),
        "person_id": person_id,
        "observation_concept_id": concept_id,
        "observation_date": on,
        "observation_type_concept_id": EHR,
        "value_as_number": value,
        "unit_concept_id": unit,
    }


def observation_period(person_id: int, start: date, end: date) -> Row:
    """The person was observed from ``start`` to ``end``, both days included."""
    return {
        "observation_period_id": next(_ids),
        "person_id": person_id,
        "observation_period_start_date": start,
        "observation_period_end_date": end,
        "period_type_concept_id": EHR,
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


def spark_schema(table: str) -> Any:
    """The Spark schema (a ``StructType``) of a CDM table, fields in specification order,
    with the types the CDM gives them (its ``datetime`` is a timestamp without zone)."""
    from pyspark.sql import types as T

    spark_types = {
        "integer": T.IntegerType(),
        "bigint": T.LongType(),
        "float": T.DoubleType(),
        "date": T.DateType(),
        "datetime": T.TimestampNTZType(),
        "varchar": T.StringType(),
    }
    return T.StructType(
        [
            T.StructField(f.name, spark_types[f.base_type], nullable=not f.required)
            for f in load_spec().table(table).fields
        ]
    )


def write_parquet(folder: Path, table: str, rows: Sequence[Row]) -> None:
    """Replace the parquet files in ``folder`` with one holding ``rows`` as CDM table
    ``table`` (its Arrow types, columns a row leaves out null), or none when no rows."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    if rows:
        schema = arrow_schema(table)
        columns = {name: [row.get(name) for row in rows] for name in schema.names}
        pq.write_table(pa.table(columns, schema=schema), folder / "part-0.parquet")


class SparkTestEngine(TestEngine):
    """A CDM in a Spark database whose tables are folders of parquet files, one per CDM
    table, the way a member's pipeline leaves them for its node to read in place.

    A load writes each table's rows as one parquet file and has Spark refresh the table,
    so no Spark job runs to load. Registering every table still takes Spark seconds, so
    a database outlives its engine: a closed engine empties what it loaded and leaves the
    database to the next. No two open engines share one, and each starts empty.
    """

    dialect: Dialect = "spark"
    placeholder = "?"
    _idle: ClassVar[list[tuple[str, Path]]] = []  # one Spark session per process

    def __init__(self, connection: Any, schema: str, files: Path) -> None:
        super().__init__(connection, schema)
        self.files = files

    @classmethod
    def create(cls, session: Any) -> SparkTestEngine:
        from accord.node.spark import SparkConnection

        connection = SparkConnection(session)
        if cls._idle:
            schema, files = cls._idle.pop()
        else:
            schema, files = cls._new_database(connection)
        return cls(connection, schema, files)

    @staticmethod
    def _new_database(connection: Any) -> tuple[str, Path]:
        session = connection.session
        warehouse = urlparse(session.conf.get("spark.sql.warehouse.dir")).path
        schema = f"cdm_{uuid.uuid4().hex[:12]}"
        files = Path(warehouse) / f"{schema}_files"
        connection.execute(f"CREATE DATABASE {schema}")
        for table in load_spec().tables:
            (files / table).mkdir(parents=True)
            session.catalog.createTable(
                f"{schema}.{table}",
                path=str(files / table),
                source="parquet",
                schema=spark_schema(table),
            )
        return schema, files

    def load(self, tables: Tables) -> None:
        """Replace what earlier ``load`` calls put in the CDM with ``tables``."""
        wanted = {table for table, rows in tables.items() if rows}
        for table in sorted(self._loaded - wanted):
            self._replace(table, [])
        for table in sorted(wanted):
            self._replace(table, tables[table])
        self._loaded = wanted

    def insert(self, table: str, rows: Sequence[Row]) -> None:
        self._replace(table, [*self._rows(table), *rows])
        self._loaded.add(table)

    def _replace(self, table: str, rows: Sequence[Row]) -> None:
        write_parquet(self.files / table, table, rows)
        self.connection.session.catalog.refreshTable(self.qualified(table))

    def _rows(self, table: str) -> list[Row]:
        return [
            row.asDict() for row in self.connection.session.table(self.qualified(table)).collect()
        ]

    def qualified(self, table: str) -> str:
        return exp.table_(table, db=self.schema, quoted=True).sql(dialect="spark")

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        for row in rows:
            self.connection.execute(sql, row)

    def close(self) -> None:
        # The session is shared by every engine; the database goes back, emptied.
        for table in sorted(self._loaded):
            self._replace(table, [])
        self._loaded = set()
        assert self.schema is not None
        SparkTestEngine._idle.append((self.schema, self.files))


def copy_to_parquet(source: Path, lake: Path, tables: Sequence[str] | None = None) -> None:
    """Write the CDM tables of the DuckDB file ``source`` (default: every one it has) as
    parquet folders under ``lake``, one file each, as a member's pipeline leaves them."""
    with duckdb.connect(str(source), read_only=True) as connection:
        present = {row[0] for row in connection.execute("SHOW TABLES").fetchall()}
        for table in tables if tables is not None else sorted(present & set(load_spec().tables)):
            folder = lake / table
            folder.mkdir(parents=True, exist_ok=True)
            target = str(folder / "part-0.parquet").replace("'", "''")
            connection.execute(f"COPY {table} TO '{target}' (FORMAT parquet)")
