"""The quality gate: every submission judged, recorded and reported at the member.

A *submission* is one load (FHIR, CSV, OMOP CSV), an attached CDM, a generated member or
a steward's re-check. :func:`judge` runs the catalogue on the whole CDM as it stands
with the submission in it, with the member's threshold overrides applied, and builds the
steward's report: every result, example record ids for each failure with the source
file and line they came from, and the change since the previous submission.

The verdicts and the member's threshold overrides are kept in bookkeeping tables beside
the CDM (for a Spark CDM, in a DuckDB file of their own: the *books*):
:mod:`accord.quality.books` stores and reads them. :func:`judge`, :func:`submit` and
:func:`serving_refusal` take the Spark connection and the books (``books=``).

A load whose submission is quarantined is rolled back (see
:meth:`accord.ingest.target.CdmTarget.load`): its rows never reach the tables analyses
read, and the steward fixes the source and loads it again. What a node serves is decided
by :func:`serving_refusal`: the latest submission whose data is in the database must not
be quarantined nor older than the data, and a database no submission has judged is not
served at all; a Spark CDM's files must be the very files the verdict judged.

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

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final, cast, get_args

import yaml

from accord.cdm import Dialect, load_spec
from accord.errors import DataError
from accord.ingest.provenance import PROVENANCE_TABLE, SqlNames
from accord.quality.books import (
    Override,
    data_fingerprint,
    data_state,
    ensure_tables,
    fingerprint_judged,
    has_table,
    latest_kept,
    lock_for_judging,
    overrides,
    record,
    submissions,
    utc_now,
    validate_override,
    where_kept,
)
from accord.quality.catalogue import Check, default_catalogue
from accord.quality.results import CheckResult, Decision, summary
from accord.quality.run import Dialect as Engine
from accord.quality.run import find_examples, run_checks

REPORT_FORMAT: Final = "accord-quality-report/1"
DEFAULT_EXAMPLES: Final = 5
MAX_EXAMPLES: Final = 100
TREND_LENGTH: Final = 12
GATED_ENGINES: Final[tuple[str, ...]] = get_args(Engine)
"""The engines the gate runs on. A node serves no data from any other."""


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


# --- the member's thresholds ------------------------------------------------------------


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
    at = _iso(utc_now())
    kept_in, kept_dialect, kept_schema = where_kept(connection, dialect, schema, books)
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
    kept_in, kept_dialect, kept_schema = where_kept(connection, dialect, schema, books)
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
        row = latest_kept(*where_kept(connection, cast(Engine, dialect), schema, books))
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
        judged = fingerprint_judged(books, str(submission_id))
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
    if not wanted or not has_table(connection, names, PROVENANCE_TABLE):
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


def _iso(moment: datetime) -> str:
    return moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
