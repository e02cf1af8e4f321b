"""The CDM an ingestion path writes into, and one load into it as one transaction.

Every ingestion path (an existing OMOP export, FHIR, a member's own CSV files) loads
through :class:`CdmTarget` and :class:`Load`, so all of them get the same guarantees:
rows arrive in bulk (Arrow into DuckDB, ``COPY`` into PostgreSQL, never row by row), a
load commits whole or not at all, and every inserted row has a provenance record that
makes re-loading the same source add nothing (see :mod:`accord.ingest.provenance`).

Tables that Accord creates here have no foreign keys on either engine: ingestion paths
load in whatever order their sources arrive, and the vocabulary may come later, so the
data-quality gate checks references instead (as it already does on DuckDB).

This module opens the database and runs the transaction; :mod:`accord.ingest.load` holds
what a load does inside it, :mod:`accord.ingest.shaping` casts rows to the spec's types
and :mod:`accord.ingest.engines` holds one adapter per database.

>>> import tempfile, pyarrow as pa
>>> from accord.ingest.report import LoadReport
>>> folder = tempfile.mkdtemp()
>>> target = CdmTarget.open(Path(folder) / "member.duckdb")
>>> report = LoadReport(kind="example", source="doctest")
>>> with target.load(report) as load:
...     ids = load.allocate_ids("location", 2)
...     load.append("location", pa.table({"location_id": ids, "city": ["Leeds", "York"]}),
...                 source_keys=pa.array(["x:1", "x:2"]), source_file="doctest",
...                 locators=pa.array(["line 2", "line 3"]), mapping_version="none")
2
>>> target.close()
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from accord.cdm import create_cdm, load_spec
from accord.errors import DataError
from accord.ingest import provenance as bookkeeping
from accord.ingest.engines import Engine, open_engine, redact_dsn
from accord.ingest.load import Load
from accord.ingest.provenance import SqlNames
from accord.ingest.report import LoadReport

if TYPE_CHECKING:
    from accord.quality.gate import Verdict

__all__ = ["CdmTarget", "Load", "redact_dsn"]

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ -]{0,62}")


class CdmTarget:
    """An OMOP CDM v5.4 database that loads write into: a DuckDB file or PostgreSQL."""

    dialect: Literal["duckdb", "postgres"]

    def __init__(
        self, engine: Engine, *, location: str, schema: str | None, gate: bool = True
    ) -> None:
        self._engine: Engine | None = engine
        self.dialect = engine.dialect
        self.location = location
        self.schema = schema
        self.names = SqlNames(engine.dialect, schema)
        self._loading = False
        self.gate = gate
        self.verdict: Verdict | None = None

    @classmethod
    def open(
        cls,
        location: str | Path,
        *,
        schema: str | None = None,
        create: bool = True,
        gate: bool = True,
    ) -> CdmTarget:
        """Open a ``.duckdb`` file or a PostgreSQL DSN and make sure the tables exist.

        ``location`` is a DSN when it is a string in either of libpq's forms
        (``postgresql://...`` or ``host=... dbname=...``); anything else is a DuckDB path.

        A missing DuckDB file is created when ``create`` is true (and removed again if its
        first load fails); otherwise it is a :class:`DataError`. A PostgreSQL ``schema`` is
        likewise created when missing only if ``create`` is true. CDM tables and Accord's
        bookkeeping tables are created when absent and left alone when present.
        ``gate`` is the default of :meth:`load`'s ``gate``.
        """
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise DataError(
                f"schema name {schema!r} is not allowed",
                hint="use letters, digits, underscores, spaces or hyphens, starting with a letter",
            )
        engine, shown = open_engine(location, schema, create=create)
        target = cls(engine, location=shown, schema=schema, gate=gate)
        try:
            create_cdm(engine.connection, engine.dialect, schema=schema, foreign_keys=False)
            engine.execute("BEGIN")
            for statement in bookkeeping.bookkeeping_statements(target.names):
                engine.execute(statement)
            engine.execute("COMMIT")
        except BaseException as error:
            target._discard()
            reason = engine.describe(error)
            if reason is not None:
                raise DataError(f"cannot create the CDM tables in {shown}: {reason}") from error
            raise
        return target

    @property
    def connection(self) -> Any:
        """The raw DuckDB or psycopg connection, for readers such as concept mappers."""
        return self._require_open().connection

    def has_rows(self, table: str) -> bool:
        """Whether CDM table ``table`` holds any row (inside a load: including its rows)."""
        load_spec().table(table)
        sql = f"SELECT 1 FROM {self.names.table(table)} LIMIT 1"
        return bool(self._require_open().fetch(sql))

    def fetch(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Rows of a query on the CDM (inside a load: including its rows)."""
        return self._require_open().fetch(sql, params)

    def vocabulary_version(self) -> str | None:
        """The loaded vocabulary's release, as Athena records it on the ``None`` row."""
        sql = (
            f"SELECT {self.names.column('vocabulary_version')} "
            f"FROM {self.names.table('vocabulary')} "
            f"WHERE {self.names.column('vocabulary_id')} = {self.names.param}"
        )
        rows = self._require_open().fetch(sql, ("None",))
        return str(rows[0][0]) if rows and rows[0][0] is not None else None

    @contextmanager
    def load(self, report: LoadReport, *, gate: bool | None = None) -> Iterator[Load]:
        """One load as ONE transaction: committed if the block ends, rolled back if it raises.

        Every load is a submission to the quality gate (:mod:`accord.quality.gate`): before
        the commit, the whole CDM with the new rows in it is checked. A quarantined
        submission is rolled back, so its rows never reach analyses, and recorded with its
        report; an accepted one commits together with its verdict. ``target.verdict``
        and ``report.quality`` then tell the outcome. ``gate=False`` (default: the
        target's) loads without a verdict, as tests of the load mechanics do; a node will
        not serve that data until ``accord quality run`` has judged it.

        The load is recorded in ``accord_loads`` with its report (``report.finish()`` is
        called here). After a failure, a DuckDB file this target created and never
        committed to is removed; otherwise the failure is recorded as a ``failed`` load.
        Disk, file and database faults come out as :class:`DataError`.
        """
        from accord.quality.books import lock_for_judging, record
        from accord.quality.gate import judge

        engine = self._require_open()
        if self._loading:
            raise RuntimeError("a load is already running on this target")
        load = Load(engine, report, uuid.uuid4().hex, self.names)
        started = _utc_now()
        self._loading = True
        self.verdict = None
        try:
            engine.execute("BEGIN")
            yield load
            load._closed = True
            report.finish()
            if self.gate if gate is None else gate:
                lock_for_judging(engine.connection, self.dialect)
                self.verdict = judge(
                    engine.connection,
                    self.dialect,
                    kind=report.kind,
                    source=report.source,
                    schema=self.schema,
                    load_ids=[load.load_id],
                    database=self.location,
                )
                report.quality = self.verdict.summary()
            if self.verdict is not None and self.verdict.decision == "quarantined":
                engine.execute("ROLLBACK")
                report.note("quarantined by the quality gate: no row of this load was kept")
                engine.execute("BEGIN")
            self._record(load.load_id, report, started, _status(self.verdict))
            if self.verdict is not None:
                kept = self.verdict.decision != "quarantined"
                record(engine.connection, self.dialect, self.verdict, kept=kept, schema=self.schema)
            engine.execute("COMMIT")
            engine.created = False
        except BaseException as error:
            load._closed = True
            self._abandon(load.load_id, report, started, error)
            reason = None if isinstance(error, DataError) else engine.describe(error)
            if reason is not None:
                raise DataError(
                    f"load into {self.location} failed and was rolled back: {reason}",
                    hint="nothing from this load was kept; fix the cause and run it again",
                ) from error
            raise
        finally:
            self._loading = False

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def __enter__(self) -> CdmTarget:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        # A block that fails before any load commits must not leave a new, empty database.
        if kind is not None and self._engine is not None and self._engine.created:
            self._discard()
        self.close()

    def _require_open(self) -> Engine:
        if self._engine is None:
            raise DataError(
                f"the CDM target {self.location} is closed",
                hint="a failed first load removes the new database; open it again",
            )
        return self._engine

    def _record(self, load_id: str, report: LoadReport, started: datetime, status: str) -> None:
        engine = self._require_open()
        engine.execute(
            bookkeeping.record_load(self.names),
            (
                load_id,
                report.kind,
                report.source,
                started,
                _utc_now(),
                status,
                report.vocabulary_version,
                report.mapping_version,
                json.dumps(report.to_json()),
            ),
        )

    def _abandon(
        self, load_id: str, report: LoadReport, started: datetime, error: BaseException
    ) -> None:
        engine = self._require_open()
        # The original error is what the caller must see; a rollback that fails as well
        # (a lost connection, say) adds nothing to it.
        with suppress(Exception):
            engine.execute("ROLLBACK")
        if engine.created:
            self._discard()
            return
        # Best effort: a failed load is worth recording, but not at the price of hiding
        # why it failed (a full disk may refuse this write too).
        try:
            report.note(f"rolled back: {type(error).__name__}: {error}")
            report.finish()
            engine.execute("BEGIN")
            self._record(load_id, report, started, "failed")
            engine.execute("COMMIT")
        except Exception:
            with suppress(Exception):
                engine.execute("ROLLBACK")

    def _discard(self) -> None:
        """Close, and remove the database if this target created it."""
        if self._engine is not None:
            self._engine.discard()
            self._engine = None


def _status(verdict: Verdict | None) -> str:
    if verdict is not None and verdict.decision == "quarantined":
        return "quarantined"
    return "committed"


def _utc_now() -> datetime:
    # Stored as TIMESTAMP without zone on both engines, always in UTC.
    return datetime.now(UTC).replace(tzinfo=None)
