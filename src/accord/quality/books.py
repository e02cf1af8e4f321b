"""The quality gate's books: where each verdict and each threshold override is kept.

Two bookkeeping tables live beside the CDM, in the member's own database:

- ``accord_quality_thresholds``: the member's threshold overrides, each with its reason;
- ``accord_quality_submissions``: one row per submission with its decision, whether its
  data was kept, and the full report (example ids included: they never leave the member).

A Spark CDM (parquet tables read in place) cannot keep them: its tables take no
``DELETE`` and no transaction. Its verdicts are kept in a DuckDB file of their own (the
*books*, see :class:`accord.node.config.SparkConfig`), which every function below that
reads or writes verdicts takes as a DuckDB database (:func:`where_kept` says which). No
load counter covers a parquet folder, so a verdict on Spark data records a fingerprint
of the files the checks read (their names, sizes and modification times, in a third
table, ``accord_quality_fingerprints``): see :func:`data_fingerprint`.

What the gate decides (judging, the verdict, whether a node may serve the data) is in
:mod:`accord.quality.gate`; this module stores and reads back.

>>> import duckdb
>>> connection = duckdb.connect()
>>> ensure_tables(connection, "duckdb")
>>> check = "plausibility.range.drug_exposure.refills"
>>> set_overrides(connection, "duckdb", [Override(check, 3.0, "refills run high here")])
>>> [(o.check_id, o.threshold) for o in overrides(connection, "duckdb")]
[('plausibility.range.drug_exposure.refills', 3.0)]
>>> latest_submission_id(connection, "duckdb") is None  # nothing judged yet
True
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlparse

from sqlglot import exp

from accord.cdm import Dialect, load_spec
from accord.errors import DataError
from accord.ingest.provenance import LOADS_TABLE, SqlNames
from accord.quality.catalogue import default_catalogue
from accord.quality.results import STATUSES
from accord.quality.run import Dialect as Engine
from accord.quality.run import present_tables

if TYPE_CHECKING:
    from accord.quality.gate import Verdict

HUB_FORMAT: Final = "accord-quality-status/1"
THRESHOLDS_TABLE: Final = "accord_quality_thresholds"
SUBMISSIONS_TABLE: Final = "accord_quality_submissions"
FINGERPRINTS_TABLE: Final = "accord_quality_fingerprints"

_THRESHOLD_COLUMNS: Final = (
    ("check_id", "VARCHAR", True),
    ("threshold", "DOUBLE", True),
    ("reason", "VARCHAR", True),
    ("set_at", "TIMESTAMP", True),
)
_SUBMISSION_COLUMNS: Final = (
    ("seq", "BIGINT", True),
    ("submission_id", "VARCHAR", True),
    ("submitted_at", "TIMESTAMP", True),
    ("kind", "VARCHAR", True),
    ("source", "VARCHAR", True),
    ("decision", "VARCHAR", True),
    ("kept", "BOOLEAN", True),
    ("loads_covered", "BIGINT", True),
    ("vocabulary_version", "VARCHAR", False),
    ("report", "VARCHAR", True),
)
_FINGERPRINT_COLUMNS: Final = (
    ("submission_id", "VARCHAR", True),
    ("fingerprint", "VARCHAR", True),
)
_NEWEST_FIRST: Final = "seq"
_ADVISORY_LOCK: Final = 7_400_118_521
"""PostgreSQL advisory lock held while a submission is judged and recorded, so two
submissions never judge the same data without each other's rows."""


@dataclass(frozen=True)
class Override:
    """A member's own threshold for one check, and why."""

    check_id: str
    threshold: float
    reason: str


# --- threshold overrides ------------------------------------------------------------


def ensure_tables(connection: Any, dialect: Dialect, schema: str | None = None) -> None:
    """Create the gate's two tables when absent."""
    names = SqlNames(dialect, schema)
    connection.execute(names.create_table(THRESHOLDS_TABLE, _THRESHOLD_COLUMNS, ("check_id",)))
    connection.execute(
        names.create_table(SUBMISSIONS_TABLE, _SUBMISSION_COLUMNS, ("submission_id",))
    )


def overrides(connection: Any, dialect: Dialect, schema: str | None = None) -> list[Override]:
    """The member's threshold overrides, by check id."""
    names = SqlNames(dialect, schema)
    if not has_table(connection, names, THRESHOLDS_TABLE):
        return []
    rows = connection.execute(
        f"SELECT {names.columns(['check_id', 'threshold', 'reason'])} "
        f"FROM {names.table(THRESHOLDS_TABLE)} ORDER BY {names.column('check_id')}"
    ).fetchall()
    return [Override(str(c), float(t), str(r)) for c, t, r in rows]


def set_overrides(
    connection: Any,
    dialect: Dialect,
    changes: Sequence[Override],
    *,
    schema: str | None = None,
    clear: Sequence[str] = (),
) -> None:
    """Store ``changes`` (replacing earlier overrides of the same checks) and remove the
    overrides of ``clear``, all or nothing, in a transaction of its own (the connection
    must be in autocommit mode). Every check id must be in the catalogue."""
    known = {check.id for check in default_catalogue()}
    for check_id in [*(c.check_id for c in changes), *clear]:
        if check_id not in known:
            raise DataError(
                f"unknown check {check_id!r}",
                hint="`accord quality thresholds --all` lists every check id",
            )
    for change in changes:
        validate_override(change)
    named = [*(c.check_id for c in changes), *clear]
    twice = sorted({check_id for check_id in named if named.count(check_id) > 1})
    if twice:
        raise DataError(
            f"check {', '.join(twice)} is given more than once",
            hint="set or clear each check once per change",
        )
    names = SqlNames(dialect, schema)
    ensure_tables(connection, dialect, schema)
    p = names.param
    table = names.table(THRESHOLDS_TABLE)
    delete = f"DELETE FROM {table} WHERE {names.column('check_id')} = {p}"
    insert = (
        f"INSERT INTO {table} ({names.columns([c for c, _, _ in _THRESHOLD_COLUMNS])}) "
        f"VALUES ({p}, {p}, {p}, {p})"
    )
    connection.execute("BEGIN")
    try:
        for check_id in [*clear, *(c.check_id for c in changes)]:
            connection.execute(delete, (check_id,))
        for change in changes:
            connection.execute(
                insert, (change.check_id, change.threshold, change.reason, utc_now())
            )
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def validate_override(change: Override) -> None:
    if isinstance(change.threshold, bool) or not isinstance(change.threshold, int | float):
        raise DataError(
            f"threshold of {change.check_id} is {change.threshold!r}, not a number",
            hint="a threshold is a percentage of rows, from 0 to 100",
        )
    if not (math.isfinite(change.threshold) and 0 <= change.threshold <= 100):
        raise DataError(
            f"threshold of {change.check_id} is {change.threshold}",
            hint="a threshold is a percentage of rows, from 0 to 100",
        )
    if not change.reason.strip():
        raise DataError(
            f"the override of {change.check_id} has no reason",
            hint="say why this member tolerates more (or fewer) violating rows",
        )


# --- verdicts ---------------------------------------------------------------------------


def record(
    connection: Any,
    dialect: Dialect,
    verdict: Verdict,
    *,
    kept: bool,
    schema: str | None = None,
) -> None:
    """Store the verdict; ``kept`` says whether the data it judged is in the database.

    Submissions are numbered in the order they are recorded (``seq``), which is the order
    every reader uses, whatever the clocks said. A Spark verdict is recorded in the
    member's books (a DuckDB database), with the fingerprint of the files it judged.
    """
    ensure_tables(connection, dialect, schema)
    names = SqlNames(dialect, schema)
    p = names.param
    verdict.report["kept"] = kept
    submission = verdict.report["submission"]
    table = names.table(SUBMISSIONS_TABLE)
    values = ", ".join([p] * (len(_SUBMISSION_COLUMNS) - 1))
    connection.execute(
        f"INSERT INTO {table} ({names.columns([c for c, _, _ in _SUBMISSION_COLUMNS])}) "
        f"SELECT coalesce(max({names.column('seq')}), 0) + 1, {values} FROM {table}",
        (
            verdict.submission_id,
            _parse_iso(submission["at"]),
            submission["kind"],
            submission["source"],
            verdict.decision,
            kept,
            submission["loads_covered"],
            submission["vocabulary_version"],
            json.dumps(verdict.report),
        ),
    )
    fingerprint = submission.get("data_fingerprint")
    if fingerprint is not None:
        connection.execute(
            names.create_table(FINGERPRINTS_TABLE, _FINGERPRINT_COLUMNS, ("submission_id",))
        )
        connection.execute(
            f"INSERT INTO {names.table(FINGERPRINTS_TABLE)} "
            f"({names.columns([c for c, _, _ in _FINGERPRINT_COLUMNS])}) VALUES ({p}, {p})",
            (verdict.submission_id, fingerprint),
        )


def submissions(
    connection: Any, dialect: Dialect, schema: str | None = None, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """Recorded submissions, oldest first (the newest ``limit`` of them), each with its
    id, time, kind, source, decision, counts, whether it was kept and per check its
    status and percentage."""
    names = SqlNames(dialect, schema)
    if not has_table(connection, names, SUBMISSIONS_TABLE):
        return []
    sql = (
        f"SELECT {names.column('report')}, {names.column('kept')} "
        f"FROM {names.table(SUBMISSIONS_TABLE)} "
        f"ORDER BY {names.column(_NEWEST_FIRST)} DESC"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    found = []
    for text, kept in reversed(connection.execute(sql).fetchall()):
        report = json.loads(text)
        found.append(
            {
                "submission_id": report["submission"]["id"],
                "at": report["submission"]["at"],
                "kind": report["submission"]["kind"],
                "source": report["submission"]["source"],
                "member": report.get("member"),
                "decision": report["decision"],
                "counts": report["counts"],
                "kept": bool(kept),
                "results": {
                    r["check_id"]: {"status": r["status"], "percentage": r["percentage"]}
                    for r in report["results"]
                },
            }
        )
    return found


def stored_report(
    connection: Any, dialect: Dialect, schema: str | None = None, submission_id: str | None = None
) -> dict[str, Any] | None:
    """A recorded submission's report: the one named, or the newest."""
    names = SqlNames(dialect, schema)
    if not has_table(connection, names, SUBMISSIONS_TABLE):
        return None
    sql = f"SELECT {names.column('report')} FROM {names.table(SUBMISSIONS_TABLE)} "
    if submission_id is None:
        row = connection.execute(
            sql + f"ORDER BY {names.column(_NEWEST_FIRST)} DESC LIMIT 1"
        ).fetchone()
    else:
        row = connection.execute(
            sql + f"WHERE {names.column('submission_id')} = {names.param}", (submission_id,)
        ).fetchone()
    return json.loads(row[0]) if row else None


def latest_kept(
    connection: Any, dialect: Dialect, schema: str | None = None
) -> tuple[Any, ...] | None:
    """The newest submission whose data was kept: its decision, time, loads covered,
    vocabulary release and id (``None``: there is none). The columns, not the report:
    this runs before every task."""
    names = SqlNames(dialect, schema)
    if not has_table(connection, names, SUBMISSIONS_TABLE):
        return None
    columns = names.columns(
        ["decision", "submitted_at", "loads_covered", "vocabulary_version", "submission_id"]
    )
    row = connection.execute(
        f"SELECT {columns} FROM {names.table(SUBMISSIONS_TABLE)} "
        f"WHERE {names.column('kept')} ORDER BY {names.column(_NEWEST_FIRST)} DESC LIMIT 1"
    ).fetchone()
    return None if row is None else tuple(row)


def latest_submission_id(
    connection: Any, dialect: Dialect, schema: str | None = None
) -> str | None:
    """The newest submission's id (cheap: no report is read)."""
    names = SqlNames(dialect, schema)
    if not has_table(connection, names, SUBMISSIONS_TABLE):
        return None
    row = connection.execute(
        f"SELECT {names.column('submission_id')} FROM {names.table(SUBMISSIONS_TABLE)} "
        f"ORDER BY {names.column(_NEWEST_FIRST)} DESC LIMIT 1"
    ).fetchone()
    return None if row is None else str(row[0])


def latest_status(
    connection: Any, dialect: Dialect, schema: str | None = None
) -> dict[str, Any] | None:
    """The newest submission as the hub may see it (see :func:`hub_status`)."""
    names = SqlNames(dialect, schema)
    if not has_table(connection, names, SUBMISSIONS_TABLE):
        return None
    row = connection.execute(
        f"SELECT {names.column('report')}, {names.column('kept')} "
        f"FROM {names.table(SUBMISSIONS_TABLE)} "
        f"ORDER BY {names.column(_NEWEST_FIRST)} DESC LIMIT 1"
    ).fetchone()
    return None if row is None else hub_status(json.loads(row[0]), kept=bool(row[1]))


def hub_status(report: Mapping[str, Any], *, kept: bool) -> dict[str, Any]:
    """The part of a report the hub receives: no record id, no source, no count of rows."""
    return {
        "format": HUB_FORMAT,
        "kept": kept,
        "submission_id": report["submission"]["id"],
        "at": report["submission"]["at"],
        "decision": report["decision"],
        "counts": {status: int(report["counts"].get(status, 0)) for status in STATUSES},
        "checks": [
            {
                "check_id": r["check_id"],
                "severity": r["severity"],
                "status": r["status"],
                "percentage": None if r["percentage"] is None else round(r["percentage"], 4),
            }
            for r in report["results"]
        ],
    }


# --- what a verdict saw -----------------------------------------------------------------


def data_state(
    connection: Any, dialect: Engine, schema: str | None = None
) -> tuple[int, str | None]:
    """What a verdict must have seen for the node to serve: the number of committed loads
    and the vocabulary release. Counted, not timed, so no clock can make a later load
    look covered. (A Spark CDM has no loads: its files are fingerprinted instead, see
    :func:`data_fingerprint`.)"""
    if dialect == "spark":
        return 0, _spark_vocabulary(connection, schema)
    names = SqlNames(dialect, schema)
    loads = 0
    if has_table(connection, names, LOADS_TABLE):
        row = connection.execute(
            f"SELECT count(*) FROM {names.table(LOADS_TABLE)} "
            f"WHERE {names.column('status')} = {names.param}",
            ("committed",),
        ).fetchone()
        loads = int(row[0]) if row else 0
    vocabulary = None
    if has_table(connection, names, "vocabulary"):
        row = connection.execute(
            f"SELECT {names.column('vocabulary_version')} FROM {names.table('vocabulary')} "
            f"WHERE {names.column('vocabulary_id')} = {names.param}",
            ("None",),
        ).fetchone()
        vocabulary = None if row is None or row[0] is None else str(row[0])
    return loads, vocabulary


def data_fingerprint(connection: Any, schema: str | None) -> str:
    """A digest of the files a Spark CDM's tables are read from, as Spark lists them
    now: every CDM table's files by name, with size and modification time for files on
    a local file system. Any file rewritten, added or removed changes it."""
    session = connection.session
    digest = hashlib.sha256()
    for table in sorted(present_tables(connection, "spark", schema) & set(load_spec().tables)):
        name = exp.table_(table, db=schema, quoted=True).sql(dialect="spark")
        files = sorted(str(uri) for uri in session.table(name).inputFiles())
        digest.update(json.dumps([table, [_file_state(uri) for uri in files]]).encode())
    return digest.hexdigest()


def _file_state(uri: str) -> list[Any]:
    location = urlparse(uri)
    if location.scheme not in ("", "file"):
        return [uri]  # a cluster's file system: its file names change when rewritten
    try:
        status = os.stat(unquote(location.path))
    except OSError:
        return [uri, None, None]
    return [uri, status.st_size, status.st_mtime_ns]


def _spark_vocabulary(connection: Any, schema: str | None) -> str | None:
    if "vocabulary" not in present_tables(connection, "spark", schema):
        return None
    query = (
        exp.select(exp.column("vocabulary_version", quoted=True))
        .from_(exp.table_("vocabulary", db=schema, quoted=True))
        .where(exp.column("vocabulary_id", quoted=True).eq(exp.Literal.string("None")))
    )
    row = connection.execute(query.sql(dialect="spark")).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def fingerprint_judged(books: Any, submission_id: str) -> str | None:
    """The fingerprint of the files a Spark verdict judged (``None``: none recorded)."""
    names = SqlNames("duckdb")
    if not has_table(books, names, FINGERPRINTS_TABLE):
        return None
    row = books.execute(
        f"SELECT {names.column('fingerprint')} FROM {names.table(FINGERPRINTS_TABLE)} "
        f"WHERE {names.column('submission_id')} = {names.param}",
        (submission_id,),
    ).fetchone()
    return None if row is None else str(row[0])


# --- where the verdicts are kept ------------------------------------------------------


def where_kept(
    connection: Any, dialect: Engine, schema: str | None, books: Any
) -> tuple[Any, Dialect, str | None]:
    """Where the verdicts on this CDM are kept: beside it, or for Spark in its books."""
    if dialect != "spark":
        return connection, dialect, schema
    if books is None:
        raise DataError(
            "a Spark CDM's quality verdicts are kept in a DuckDB file, and none was given",
            hint="set database.spark.gate_db in the node config (or database.spark.tables)",
        )
    return books, "duckdb", None


def lock_for_judging(connection: Any, dialect: Dialect) -> None:
    """Inside a transaction: wait until no other submission is being judged (PostgreSQL;
    a DuckDB file has one writer at a time anyway)."""
    if dialect == "postgres":
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK,))


# --- helpers --------------------------------------------------------------------------


def has_table(connection: Any, names: SqlNames, table: str) -> bool:
    rows = connection.execute(
        "SELECT table_schema, table_name, current_schema() FROM information_schema.tables"
    ).fetchall()
    return any(name == table and home == (names.schema or now) for home, name, now in rows)


def utc_now() -> datetime:
    # Stored as TIMESTAMP without zone on both engines, always in UTC.
    return datetime.now(UTC).replace(tzinfo=None)


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC).replace(tzinfo=None)
