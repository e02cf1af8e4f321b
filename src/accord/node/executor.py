"""Running an allowlisted analysis on the member's own database.

This is the only place where member rows are read. What leaves this module has passed
the member's disclosure profile: the raw figure never does. Data the quality gate has not
accepted is not read at all (:func:`accord.quality.gate.serving_refusal`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from accord.errors import DataError, QueryError
from accord.node.config import DatabaseConfig, DisclosureConfig
from accord.privacy.disclosure import SmallCellProfile, apply_count
from accord.quality.gate import serving_refusal
from accord.query import CountPersons, query_from_json
from accord.query.run import run_count

ALLOWED_ANALYSES = {"count_persons"}


class Refusal(Exception):
    """The node will not run this task; the reason is safe to send to the hub."""


def profile_for(config: DisclosureConfig) -> SmallCellProfile:
    return SmallCellProfile(
        name=f"small-cell-{config.threshold}-round-{config.rounding}",
        threshold=config.threshold,
        rounding=config.rounding,
    )


@contextmanager
def connect(database: DatabaseConfig) -> Iterator[Any]:
    """A read-only connection to the member's CDM."""
    connection: Any
    if database.engine == "duckdb":
        import duckdb

        assert database.path is not None
        try:
            connection = duckdb.connect(database.path, read_only=True)
        except duckdb.Error as error:
            raise DataError(f"cannot open member database {database.path}: {error}") from None
    else:
        import psycopg

        assert database.dsn is not None
        connection = psycopg.connect(database.dsn)
        # One snapshot for the gate's verdict and the analysis: a load committing in
        # between cannot slip data past the check.
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True
    try:
        yield connection
    finally:
        connection.close()


def execute(
    analysis: dict[str, Any], database: DatabaseConfig, disclosure: DisclosureConfig
) -> dict[str, Any]:
    """Run one analysis and return its disclosed result, ready to seal for the hub."""
    try:
        query = query_from_json(analysis)
    except QueryError as error:
        raise Refusal(f"analysis failed validation at the node: {error.message}") from None
    if not isinstance(query, CountPersons):
        raise Refusal(f"analysis {analysis.get('type')!r} is not allowlisted at this node")
    profile = profile_for(disclosure)
    with connect(database) as connection:
        withheld = serving_refusal(connection, database.engine, database.schema_)
        if withheld is not None:
            raise Refusal(withheld)
        raw = run_count(connection, query, database.engine, schema=database.schema_)
    disclosed = apply_count(profile, raw)
    return {
        "analysis": "count_persons",
        "disclosed": disclosed.to_json(),
        "profile": profile.to_json(),
    }
