"""DDL generated from the CDM specification, run on DuckDB (and PostgreSQL when present)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from accord.cdm import (
    Dialect,
    UnknownTableError,
    arrow_schema,
    create_cdm,
    ddl_statements,
    load_spec,
    skipped_foreign_keys,
)
from accord.errors import DataError

DUCKDB_TYPES = {
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "float": "DOUBLE",
    "date": "DATE",
    "datetime": "TIMESTAMP",
    "varchar": "VARCHAR",
}
POSTGRES_TYPES = {
    "integer": "integer",
    "bigint": "bigint",
    "float": "double precision",
    "date": "date",
    "datetime": "timestamp without time zone",
    "varchar": "character varying",
}

EXPECTED_SKIPS = {
    ("visit_occurrence", "preceding_visit_occurrence_id", "own table"),
    ("visit_detail", "preceding_visit_detail_id", "own table"),
    ("visit_detail", "parent_visit_detail_id", "own table"),
    ("vocabulary", "vocabulary_concept_id", "cycle"),
    ("domain", "domain_concept_id", "cycle"),
    ("concept_class", "concept_class_concept_id", "cycle"),
}


@pytest.fixture
def connection() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(":memory:")
    yield con
    con.close()


def columns(con: Any, table: str, schema: str, placeholder: str = "?") -> list[tuple[str, ...]]:
    rows = con.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        f"WHERE table_schema = {placeholder} AND table_name = {placeholder} "
        "ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    return [tuple(row) for row in rows]


def expected_columns(table: str, types: dict[str, str]) -> list[tuple[str, ...]]:
    fields = load_spec().table(table).fields
    return [
        (
            f.name,
            "text"
            if f.datatype == "varchar(MAX)" and types is POSTGRES_TYPES
            else types[f.base_type],
            "NO" if f.required else "YES",
        )
        for f in fields
    ]


def declared_foreign_keys(statement: str, dialect: Dialect) -> list[tuple[str, str, str]]:
    """(field, referenced table, referenced field) for each FOREIGN KEY in a statement."""
    create = sqlglot.parse_one(statement, read=dialect)
    found = []
    for key in create.find_all(exp.ForeignKey):
        target = key.args["reference"].this
        found.append((key.expressions[0].name, target.this.name, target.expressions[0].name))
    return found


def created_table(statement: str, dialect: Dialect) -> str:
    create = sqlglot.parse_one(statement, read=dialect)
    assert isinstance(create, exp.Create)
    return str(create.this.this.name)


def test_duckdb_tables_match_the_spec(connection: duckdb.DuckDBPyConnection) -> None:
    create_cdm(connection, "duckdb")
    for table in load_spec().tables:
        assert columns(connection, table, "main") == expected_columns(table, DUCKDB_TYPES)


def test_duckdb_primary_keys_match_the_spec(connection: duckdb.DuckDBPyConnection) -> None:
    create_cdm(connection, "duckdb")
    rows = connection.execute(
        "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
        "WHERE constraint_type = 'PRIMARY KEY'"
    ).fetchall()
    declared = {table: tuple(names) for table, names in rows}
    expected = {t.name: t.primary_key for t in load_spec().tables.values() if t.primary_key}
    assert declared == expected


def test_duckdb_has_no_foreign_keys_by_default(connection: duckdb.DuckDBPyConnection) -> None:
    assert not any("FOREIGN KEY" in s for s in ddl_statements("duckdb"))
    create_cdm(connection, "duckdb")
    # Events may be loaded before the people they belong to.
    connection.execute("INSERT INTO death (person_id, death_date) VALUES (1, DATE '2020-01-01')")


def test_duckdb_with_foreign_keys_in_a_schema(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute('CREATE SCHEMA "Cdm Data"')
    create_cdm(connection, "duckdb", schema="Cdm Data", foreign_keys=True)
    expected = sum(len(t.references()) for t in load_spec().tables.values())
    expected -= len(skipped_foreign_keys())
    count = connection.execute(
        "SELECT count(*) FROM duckdb_constraints() "
        "WHERE constraint_type = 'FOREIGN KEY' AND schema_name = 'Cdm Data'"
    ).fetchone()
    assert count == (expected,)
    with pytest.raises(duckdb.ConstraintException):
        connection.execute(
            "INSERT INTO \"Cdm Data\".death (person_id, death_date) VALUES (1, DATE '2020-01-01')"
        )


def test_create_cdm_twice_is_harmless(connection: duckdb.DuckDBPyConnection) -> None:
    create_cdm(connection, "duckdb", tables=["person"])
    connection.execute(
        "INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id, "
        "ethnicity_concept_id) VALUES (1, 8507, 1970, 0, 0)"
    )
    create_cdm(connection, "duckdb")
    assert connection.execute("SELECT count(*) FROM person").fetchone() == (1,)


class FailingConnection:
    """Passes statements to DuckDB but fails on the one creating ``fail_on``."""

    def __init__(self, con: duckdb.DuckDBPyConnection, fail_on: str) -> None:
        self.con = con
        self.fail_on = fail_on
        self.executed: list[str] = []

    def execute(self, query: str, /) -> object:
        self.executed.append(query)
        if f'"{self.fail_on}" (' in query:
            raise RuntimeError("disk full")
        return self.con.execute(query)


def test_create_cdm_leaves_nothing_half_created(connection: duckdb.DuckDBPyConnection) -> None:
    failing = FailingConnection(connection, fail_on="measurement")
    with pytest.raises(RuntimeError, match="disk full") as info:
        create_cdm(failing, "duckdb")
    assert any('"measurement"' in note for note in info.value.__notes__)
    assert failing.executed[0] == "BEGIN"
    assert failing.executed[-1] == "ROLLBACK"
    assert len(failing.executed) > 10
    tables = connection.execute("SELECT count(*) FROM information_schema.tables").fetchone()
    assert tables == (0,)


def test_create_cdm_joins_an_open_dbapi_transaction() -> None:
    class Recorder:
        autocommit = False

        def __init__(self) -> None:
            self.executed: list[str] = []

        def execute(self, query: str, /) -> object:
            self.executed.append(query)
            return None

    recorder = Recorder()
    create_cdm(recorder, "postgres", tables=["location"])
    assert recorder.executed[0].startswith('CREATE TABLE IF NOT EXISTS "location"')
    assert recorder.executed[-1] == "COMMIT"


def test_postgres_ddl_parses_and_declares_the_spec() -> None:
    spec = load_spec()
    statements = ddl_statements("postgres", schema="cdm")
    assert len(statements) == len(spec.tables)
    for statement in statements:
        create = sqlglot.parse_one(statement, read="postgres")
        assert isinstance(create, exp.Create)
        assert create.args["exists"]
        table = spec.table(create.this.this.name)
        assert create.this.this.db == "cdm"
        column_defs = [c for c in create.this.expressions if isinstance(c, exp.ColumnDef)]
        assert [c.name for c in column_defs] == list(table.field_names)
        for column, field in zip(column_defs, table.fields, strict=True):
            not_null = any(
                isinstance(c.kind, exp.NotNullColumnConstraint)
                for c in column.args.get("constraints") or []
            )
            assert not_null == field.required, f"{table.name}.{field.name}"
            if field.base_type == "float":
                assert column.args["kind"].sql("postgres") == "DOUBLE PRECISION"


def test_postgres_declares_foreign_keys_by_default_parents_first() -> None:
    statements = ddl_statements("postgres")
    skipped = {(s.table, s.field) for s in skipped_foreign_keys()}
    created: list[str] = []
    declared = 0
    for statement in statements:
        name = created_table(statement, "postgres")
        table = load_spec().table(name)
        keys = declared_foreign_keys(statement, "postgres")
        for field, target_table, target_field in keys:
            assert target_table in created, f"{name}.{field} refers to a later table"
            assert str(table.field(field).foreign_key) == f"{target_table}.{target_field}"
        expected = [f.name for f, _ in table.references() if (name, f.name) not in skipped]
        assert [k[0] for k in keys] == expected
        declared += len(keys)
        created.append(name)
    assert declared > 100


def test_skipped_foreign_keys_are_self_references_and_cycle_closers() -> None:
    skipped = skipped_foreign_keys()
    found = set()
    for skip in skipped:
        kind = "own table" if "own table" in skip.reason else "cycle"
        found.add((skip.table, skip.field, kind))
    assert found == EXPECTED_SKIPS
    assert all(s.reason for s in skipped)


def test_foreign_keys_off_on_request_for_postgres() -> None:
    assert not any("FOREIGN KEY" in s for s in ddl_statements("postgres", foreign_keys=False))


def test_a_subset_only_references_tables_it_creates() -> None:
    statements = ddl_statements("postgres", tables=["drug_exposure", "person", "concept"])
    assert [created_table(s, "postgres") for s in statements] == [
        "concept",
        "person",
        "drug_exposure",
    ]
    assert {t for s in statements for _, t, _ in declared_foreign_keys(s, "postgres")} == {
        "concept",
        "person",
    }
    reasons = {(s.table, s.field): s.reason for s in skipped_foreign_keys(["person"])}
    assert "not being created" in reasons[("person", "gender_concept_id")]


def test_identifiers_are_quoted_not_spliced() -> None:
    hostile = 'x"; DROP TABLE person; --'
    (statement,) = ddl_statements("duckdb", schema=hostile, tables=["domain"])
    parsed = sqlglot.parse(statement, read="duckdb")
    assert len(parsed) == 1
    assert isinstance(parsed[0], exp.Create)
    assert parsed[0].this.this.db == hostile


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"dialect": "sqlite"}, DataError, "unsupported SQL dialect 'sqlite'"),
        ({"tables": ["persons"]}, UnknownTableError, "valid tables are: person"),
        ({"tables": "person"}, DataError, r"pass \['person'\]"),
        ({"schema": ""}, DataError, "non-empty"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    arguments: dict[str, Any] = {"dialect": "duckdb", **kwargs}
    with pytest.raises(error, match=message):
        ddl_statements(**arguments)


def test_arrow_schema_follows_the_spec() -> None:
    schema = arrow_schema("drug_exposure")
    assert schema.names == list(load_spec().table("drug_exposure").field_names)
    assert schema.field("drug_exposure_id").type == pa.int32()
    assert not schema.field("drug_exposure_id").nullable
    assert schema.field("quantity").type == pa.float64()
    assert schema.field("quantity").nullable
    assert schema.field("drug_exposure_start_date").type == pa.date32()
    assert schema.field("drug_exposure_start_datetime").type == pa.timestamp("us")
    assert schema.field("sig").type == pa.string()


def test_arrow_schema_of_an_unknown_table() -> None:
    with pytest.raises(UnknownTableError, match="'people'"):
        arrow_schema("people")


def test_empty_arrow_tables_insert_into_every_table(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    create_cdm(connection, "duckdb")
    for name in load_spec().tables:
        empty = arrow_schema(name).empty_table()
        connection.register("incoming", empty)
        connection.execute(f'INSERT INTO "{name}" SELECT * FROM incoming')
        connection.unregister("incoming")


def test_arrow_rows_round_trip_through_duckdb(connection: duckdb.DuckDBPyConnection) -> None:
    create_cdm(connection, "duckdb", tables=["observation"])
    schema = arrow_schema("observation")
    row = {name: None for name in schema.names} | {
        "observation_id": 1,
        "person_id": 2,
        "observation_concept_id": 4275495,
        "observation_date": datetime.date(2021, 3, 4),
        "observation_datetime": datetime.datetime(2021, 3, 4, 10, 30),
        "observation_type_concept_id": 32817,
        "value_as_number": 1.5,
        "value_as_string": "a little",
    }
    incoming = pa.Table.from_pylist([row], schema=schema)
    connection.register("incoming", incoming)
    connection.execute("INSERT INTO observation SELECT * FROM incoming")
    assert connection.sql("SELECT * FROM observation").to_arrow_table().to_pylist() == [row]


@pytest.mark.postgres
def test_postgres_tables_match_the_spec(postgres_dsn: str, postgres_schema: str) -> None:
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        create_cdm(con, "postgres", schema=postgres_schema)
        create_cdm(con, "postgres", schema=postgres_schema)
        for table in load_spec().tables:
            assert columns(con, table, postgres_schema, "%s") == expected_columns(
                table, POSTGRES_TYPES
            )
        row = con.execute(
            "SELECT count(*) FROM information_schema.table_constraints "
            "WHERE table_schema = %s AND constraint_type = 'FOREIGN KEY'",
            [postgres_schema],
        ).fetchone()
        expected = sum(len(t.references()) for t in load_spec().tables.values())
        assert row == (expected - len(skipped_foreign_keys()),)
