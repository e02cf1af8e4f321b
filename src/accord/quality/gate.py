"""The quality gate: every submission judged, recorded and reported at the member.

A *submission* is one load (FHIR, CSV, OMOP CSV), an attached CDM, a generated member or
a steward's re-check. :func:`judge` runs the catalogue on the whole CDM as it stands
with the submission in it, with the member's threshold overrides applied, and builds the
steward's report: every result, example record ids for each failure with the source
file and line they came from, and the change since the previous submission.

Two bookkeeping tables live beside the CDM, in the member's own database:

- ``accord_quality_thresholds``: the member's threshold overrides, each with its reason;
- ``accord_quality_submissions``: one row per submission with its decision, whether its
  data was kept, and the full report (example ids included: they never leave the member).

A Spark CDM (parquet tables read in place) cannot keep them: its tables take no
``DELETE`` and no transaction. Its verdicts are kept in a DuckDB file of their own (the
*books*, see :class:`accord.node.config.SparkConfig`), which every function below that
reads or writes verdicts takes as a DuckDB database; :func:`judge`, :func:`submit` and
:func:`serving_refusal` take the Spark connection and the books (``books=``). No load
counter covers a parquet folder, so a verdict on Spark data records a fingerprint of the
files the checks read (their names, sizes and modification times, in a third table,
``accord_quality_fingerprints``), and data whose files differ is not served.

A load whose submission is quarantined is rolled back (see
:meth:`accord.ingest.target.CdmTarget.load`): its rows never reach the tables analyses
read, and the steward fixes the source and loads it again. What a node serves is decided
by :func:`serving_refusal`: the latest submission whose data is in the database must not
be quarantined nor older than the data, and a database no submission has judged is not
served at all.

>>> import duckdb
>>> from accord.cdm import create_cdm
>>> connection = duckdb.connect()
>>> create_cdm(connection, "duckdb")
>>> ensure_tables(connection, "duckdb")
>>> verdict = judge(connection, "duckdb", kind="check", source="doctest")
>>> verdict.decision  # an empty CDM is never a pass
'quarantined'
>>> record(connection, "duckdb", verdict, kept=True)
>>> serving_refusal(connection, "duckdb")[:60]
"this member's data is quarantined by its quality gate (submi"
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final, cast, get_args
from urllib.parse import unquote, urlparse

import yaml
from sqlglot import exp

from accord.cdm import Dialect, load_spec
from accord.errors import DataError
from accord.ingest.provenance import LOADS_TABLE, PROVENANCE_TABLE, SqlNames
from accord.quality.catalogue import Check, default_catalogue
from accord.quality.results import STATUSES, CheckResult, Decision, summary
from accord.quality.run import Dialect as Engine
from accord.quality.run import find_examples, present_tables, run_checks

REPORT_FORMAT: Final = "accord-quality-report/1"
HUB_FORMAT: Final = "accord-quality-status/1"
THRESHOLDS_TABLE: Final = "accord_quality_thresholds"
SUBMISSIONS_TABLE: Final = "accord_quality_submissions"
FINGERPRINTS_TABLE: Final = "accord_quality_fingerprints"
DEFAULT_EXAMPLES: Final = 5
MAX_EXAMPLES: Final = 100
TREND_LENGTH: Final = 12

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
GATED_ENGINES: Final[tuple[str, ...]] = get_args(Engine)
"""The engines the gate runs on. A node serves no data from any other."""
_ADVISORY_LOCK: Final = 7_400_118_521
"""PostgreSQL advisory lock held while a submission is judged and recorded, so two
submissions never judge the same data without each other's rows."""


@dataclass(frozen=True)
class Override:
    """A member's own threshold for one check, and why."""

    check_id: str
    threshold: float
    reason: str


@dataclass(frozen=True)
class Verdict:
    """One submission judged: its decision and the steward's report (a JSON document)."""

    submission_id: str
    decision: Decision
    report: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """Decision, counts and the failing checks' sentences: what a load report shows."""
        failing = [r for r in self.report["results"] if r["status"] in ("fail", "error")]
        failing.sort(key=lambda r: (r["severity"] != "fatal", -(r["percentage"] or 0)))
        return {
            "submission_id": self.submission_id,
            "decision": self.decision,
            "counts": dict(self.report["counts"]),
            "failing": [
                {"check_id": r["check_id"], "severity": r["severity"], "sentence": r["sentence"]}
                for r in failing
            ],
        }


# --- bookkeeping tables -------------------------------------------------------------


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
    if not _has_table(connection, names, THRESHOLDS_TABLE):
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
                insert, (change.check_id, change.threshold, change.reason, _utc_now())
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


def read_threshold_file(path: Path) -> list[Override]:
    """Overrides from a YAML file: ``check id: {threshold: 5, reason: "..."}`` per entry.

    Every problem is reported at once, with the check named, before anything is stored.
    """
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeys)  # noqa: S506
    except OSError as error:
        raise DataError(f"cannot read threshold file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise DataError(f"threshold file {path} is not UTF-8 text") from None
    except yaml.YAMLError as error:
        raise DataError(f"threshold file {path} is not valid YAML: {error}") from None
    expected = "a mapping of check id to {threshold: number, reason: text}"
    if not isinstance(document, dict) or not document:
        raise DataError(f"threshold file {path} holds no overrides", hint=f"expected {expected}")
    known = {check.id for check in default_catalogue()}
    found: list[Override] = []
    problems: list[str] = []
    for check_id, entry in document.items():
        if str(check_id) not in known:
            problems.append(f"unknown check {check_id!r}")
            continue
        if not isinstance(entry, dict) or set(entry) != {"threshold", "reason"}:
            problems.append(f"{check_id}: expected {{threshold: number, reason: text}}")
            continue
        threshold, reason = entry["threshold"], entry["reason"]
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            problems.append(f"{check_id}: threshold {threshold!r} is not a number")
            continue
        override = Override(str(check_id), float(threshold), str(reason or ""))
        try:
            validate_override(override)
        except DataError as error:
            problems.append(error.message)
            continue
        found.append(override)
    if problems:
        raise DataError(
            f"threshold file {path}: " + "; ".join(problems),
            hint=f"expected {expected}; `accord quality thresholds --all` lists check ids",
        )
    return found


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice (YAML would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def with_overrides(checks: Iterable[Check], changes: Iterable[Override]) -> tuple[Check, ...]:
    """The catalogue with the member's thresholds in place of the defaults."""
    by_id = {change.check_id: change.threshold for change in changes}
    return tuple(
        replace(check, threshold=by_id[check.id]) if check.id in by_id else check
        for check in checks
    )


# --- judging and recording ----------------------------------------------------------


def judge(
    connection: Any,
    dialect: Engine,
    *,
    kind: str,
    source: str,
    schema: str | None = None,
    load_ids: Sequence[str] = (),
    member: str | None = None,
    database: str | None = None,
    examples: int = DEFAULT_EXAMPLES,
    today: date | None = None,
    books: Any = None,
) -> Verdict:
    """Run the whole catalogue (with the member's overrides) and build the report.

    Reads only: call :func:`record` to keep the verdict. ``examples`` caps the record ids
    listed per failed check (0 lists none). A Spark CDM's overrides and earlier verdicts
    are read from ``books``; its report records the fingerprint of the files judged, and
    files that change while they are judged are a :class:`DataError`.
    """
    if not 0 <= examples <= MAX_EXAMPLES:
        raise DataError(
            f"examples is {examples}", hint=f"ask for 0 to {MAX_EXAMPLES} example ids per check"
        )
    started = time.perf_counter()
    at = _iso(_utc_now())
    kept_in, kept_dialect, kept_schema = _books(connection, dialect, schema, books)
    fingerprint = data_fingerprint(connection, schema) if dialect == "spark" else None
    loads, vocabulary = data_state(connection, dialect, schema)
    member_overrides = {o.check_id: o for o in overrides(kept_in, kept_dialect, kept_schema)}
    checks = with_overrides(default_catalogue(), member_overrides.values())
    results = run_checks(connection, dialect, schema=schema, checks=checks, today=today)
    outcome = summary(results)
    failed = [c for c, r in zip(checks, results, strict=True) if r.status == "fail"]
    found = (
        find_examples(connection, dialect, failed, schema=schema, limit=examples)
        if examples
        else {}
    )
    sources = {} if dialect == "spark" else _sources(connection, dialect, schema, checks, found)
    if fingerprint is not None and data_fingerprint(connection, schema) != fingerprint:
        raise DataError(
            "the CDM's files changed while they were being checked; nothing was recorded",
            hint="run `accord quality run` again once the member's pipeline has finished",
        )
    history = submissions(kept_in, kept_dialect, kept_schema, limit=TREND_LENGTH)
    if member is None and history:  # a steward's re-check names the member it always was
        member = history[-1]["member"]
    previous = history[-1]["results"] if history else {}
    submission_id = uuid.uuid4().hex
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "member": member,
        "database": database,
        "submission": {
            "id": submission_id,
            "kind": kind,
            "source": source,
            "at": at,
            "load_ids": list(load_ids),
            # What the verdict saw: committed loads (this one included) and vocabulary.
            "loads_covered": loads + (1 if load_ids else 0),
            "vocabulary_version": vocabulary,
            **({} if fingerprint is None else {"data_fingerprint": fingerprint}),
        },
        "kept": None,
        "decision": outcome.decision,
        "counts": dict(outcome.counts),
        "checks_run": len(results),
        "duration_seconds": round(time.perf_counter() - started, 3),
        "example_limit": examples,
        "results": [
            _result_json(
                result,
                member_overrides.get(result.check_id),
                [
                    {"id": row_id, "source": sources.get((check.table, row_id))}
                    for row_id in found.get(result.check_id, [])
                ],
                previous.get(result.check_id),
            )
            for check, result in zip(checks, results, strict=True)
        ],
        "trend": [
            {k: entry[k] for k in ("submission_id", "at", "decision", "counts")}
            for entry in history
        ]
        + [
            {
                "submission_id": submission_id,
                "at": at,
                "decision": outcome.decision,
                "counts": dict(outcome.counts),
            }
        ],
    }
    return Verdict(submission_id=submission_id, decision=outcome.decision, report=report)


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
    if not _has_table(connection, names, SUBMISSIONS_TABLE):
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
    if not _has_table(connection, names, SUBMISSIONS_TABLE):
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


def submit_database(
    location: str | Path,
    *,
    kind: str,
    source: str,
    schema: str | None = None,
    member: str | None = None,
    today: date | None = None,
) -> Verdict:
    """Judge a whole database as one submission whose data stays (a generated member, an
    attached CDM): record the verdict in it and return it."""
    from accord.ingest.engines import open_engine

    engine, shown = open_engine(location, schema, create=False)
    try:
        return submit(
            engine.connection,
            engine.dialect,
            kind=kind,
            source=source,
            schema=schema,
            member=member,
            database=shown,
            today=today,
        )
    finally:
        engine.close()


def submit(
    connection: Any,
    dialect: Engine,
    *,
    kind: str,
    source: str,
    schema: str | None = None,
    member: str | None = None,
    database: str | None = None,
    examples: int = DEFAULT_EXAMPLES,
    today: date | None = None,
    books: Any = None,
) -> Verdict:
    """Judge the CDM as it stands and record the verdict, its data kept.

    ``connection`` is in autocommit mode. On PostgreSQL the verdict is judged and
    recorded in one transaction holding the gate's lock; on DuckDB each check runs on its
    own, so a check that fails to run is reported as an error and the others go on. A
    Spark CDM's verdict is recorded in ``books`` (a DuckDB connection; the file has one
    writer at a time), in one transaction with its fingerprint.
    """
    kept_in, kept_dialect, kept_schema = _books(connection, dialect, schema, books)
    ensure_tables(kept_in, kept_dialect, kept_schema)
    if dialect == "spark":
        verdict = judge(
            connection,
            dialect,
            kind=kind,
            source=source,
            schema=schema,
            member=member,
            database=database,
            examples=examples,
            today=today,
            books=kept_in,
        )
        kept_in.execute("BEGIN")
        try:
            record(kept_in, kept_dialect, verdict, kept=True)
        except BaseException:
            kept_in.execute("ROLLBACK")
            raise
        kept_in.execute("COMMIT")
        return verdict
    transaction = dialect == "postgres"
    if transaction:
        connection.execute("BEGIN")
    try:
        lock_for_judging(connection, dialect)
        verdict = judge(
            connection,
            dialect,
            kind=kind,
            source=source,
            schema=schema,
            member=member,
            database=database,
            examples=examples,
            today=today,
        )
        record(connection, dialect, verdict, kept=True, schema=schema)
    except BaseException:
        if transaction:
            connection.execute("ROLLBACK")
        raise
    if transaction:
        connection.execute("COMMIT")
    return verdict


def serving_refusal(
    connection: Any, dialect: str, schema: str | None = None, *, books: Any = None
) -> str | None:
    """Why a node must not serve this database to analyses, or ``None`` when it may.

    Fails closed: data no submission has judged, data whose newest verdict is
    quarantined, and data loaded after the newest verdict (a load run without the gate)
    are all withheld, and so is every database on an engine the gate cannot check (see
    :data:`GATED_ENGINES`). A Spark CDM's verdicts are read from ``books`` (``None``:
    there are none), and its files must be the very files the verdict judged. The reason
    names no patient data.
    """
    if dialect not in GATED_ENGINES:
        return (
            f"this member's data cannot be served: its quality gate does not run on "
            f"{dialect} databases, and no data is served without the gate's verdict"
        )
    spark = dialect == "spark"
    row = None
    if not spark or books is not None:
        kept_in, kept_dialect, kept_schema = _books(
            connection, cast(Engine, dialect), schema, books
        )
        names = SqlNames(kept_dialect, kept_schema)
        if _has_table(kept_in, names, SUBMISSIONS_TABLE):
            # The columns, not the report: this runs before every task.
            columns = names.columns(
                ["decision", "submitted_at", "loads_covered", "vocabulary_version", "submission_id"]
            )
            row = kept_in.execute(
                f"SELECT {columns} FROM {names.table(SUBMISSIONS_TABLE)} "
                f"WHERE {names.column('kept')} ORDER BY {names.column(_NEWEST_FIRST)} DESC LIMIT 1"
            ).fetchone()
    if row is None:
        return (
            "this member's data has not passed the quality gate yet; "
            "its data steward runs `accord quality run`"
        )
    decision, submitted_at, loads_covered, vocabulary_judged, submission_id = row
    if decision == "quarantined":
        return (
            f"this member's data is quarantined by its quality gate (submission of "
            f"{submitted_at:%Y-%m-%d %H:%M} UTC) until its data steward fixes and resubmits it"
        )
    if spark:
        judged = _fingerprint_judged(books, str(submission_id))
        changed = judged is None or judged != data_fingerprint(connection, schema)
    else:
        loads, vocabulary = data_state(connection, cast(Dialect, dialect), schema)
        changed = loads != loads_covered or vocabulary != vocabulary_judged
    if changed:
        return (
            "this member's data or vocabulary changed after its last quality check; "
            "its data steward runs `accord quality run`"
        )
    return None


def latest_submission_id(
    connection: Any, dialect: Dialect, schema: str | None = None
) -> str | None:
    """The newest submission's id (cheap: no report is read)."""
    names = SqlNames(dialect, schema)
    if not _has_table(connection, names, SUBMISSIONS_TABLE):
        return None
    row = connection.execute(
        f"SELECT {names.column('submission_id')} FROM {names.table(SUBMISSIONS_TABLE)} "
        f"ORDER BY {names.column(_NEWEST_FIRST)} DESC LIMIT 1"
    ).fetchone()
    return None if row is None else str(row[0])


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
    if _has_table(connection, names, LOADS_TABLE):
        row = connection.execute(
            f"SELECT count(*) FROM {names.table(LOADS_TABLE)} "
            f"WHERE {names.column('status')} = {names.param}",
            ("committed",),
        ).fetchone()
        loads = int(row[0]) if row else 0
    vocabulary = None
    if _has_table(connection, names, "vocabulary"):
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


def _fingerprint_judged(books: Any, submission_id: str) -> str | None:
    """The fingerprint of the files a Spark verdict judged (``None``: none recorded)."""
    names = SqlNames("duckdb")
    if not _has_table(books, names, FINGERPRINTS_TABLE):
        return None
    row = books.execute(
        f"SELECT {names.column('fingerprint')} FROM {names.table(FINGERPRINTS_TABLE)} "
        f"WHERE {names.column('submission_id')} = {names.param}",
        (submission_id,),
    ).fetchone()
    return None if row is None else str(row[0])


def _books(
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


def latest_status(
    connection: Any, dialect: Dialect, schema: str | None = None
) -> dict[str, Any] | None:
    """The newest submission as the hub may see it (see :func:`hub_status`)."""
    names = SqlNames(dialect, schema)
    if not _has_table(connection, names, SUBMISSIONS_TABLE):
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


# --- helpers --------------------------------------------------------------------------


def _result_json(
    result: CheckResult,
    override: Override | None,
    examples: list[dict[str, Any]],
    previous: Mapping[str, Any] | None,
) -> dict[str, Any]:
    return {
        **result.to_json(),
        "threshold_reason": override.reason if override else None,
        "examples": examples,
        "previous": dict(previous) if previous else None,
    }


def _sources(
    connection: Any,
    dialect: Dialect,
    schema: str | None,
    checks: Sequence[Check],
    found: Mapping[str, list[int | str]],
) -> dict[tuple[str, Any], str]:
    """Where each example row came from (``file, line 17``), for rows a load recorded."""
    names = SqlNames(dialect, schema)
    wanted: dict[str, set[int]] = {}
    for check in checks:
        numbers = [i for i in found.get(check.id, []) if isinstance(i, int)]
        if numbers:
            wanted.setdefault(check.table, set()).update(numbers)
    if not wanted or not _has_table(connection, names, PROVENANCE_TABLE):
        return {}
    located: dict[tuple[str, Any], str] = {}
    columns = names.columns(["row_id", "source_file", "locator"])
    for table, ids in wanted.items():
        load_spec().table(table)
        marks = ", ".join([names.param] * len(ids))
        rows = connection.execute(
            f"SELECT {columns} FROM {names.table(PROVENANCE_TABLE)} "
            f"WHERE {names.column('cdm_table')} = {names.param} "
            f"AND {names.column('row_id')} IN ({marks})",
            (table, *sorted(ids)),
        ).fetchall()
        for row_id, source_file, locator in rows:
            where = ", ".join(str(part) for part in (source_file, locator) if part)
            located[(table, int(row_id))] = where
    return located


def _has_table(connection: Any, names: SqlNames, table: str) -> bool:
    rows = connection.execute(
        "SELECT table_schema, table_name, current_schema() FROM information_schema.tables"
    ).fetchall()
    return any(name == table and home == (names.schema or now) for home, name, now in rows)


def _utc_now() -> datetime:
    # Stored as TIMESTAMP without zone on both engines, always in UTC.
    return datetime.now(UTC).replace(tzinfo=None)


def _iso(moment: datetime) -> str:
    return moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC).replace(tzinfo=None)
