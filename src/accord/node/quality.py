"""The node's side of the quality gate: audit each verdict, tell the hub its status.

Verdicts are made where data is loaded (``accord ingest``, ``accord quality run``) and
stored in the member's database (a Spark member's in its DuckDB verdicts file). The node,
the member's signed identity, copies each new verdict into its audit log (decision,
counts and every check's status and percentage; never a record id) and sends the hub the
newest one's status.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from accord.cdm import Dialect
from accord.errors import DataError
from accord.node.executor import MemberDatabase
from accord.node.spark import gate_books
from accord.quality.books import latest_status, latest_submission_id, submissions
from accord.trust.audit import AuditLog


class QualitySync:
    """Remembers which verdicts the audit log already holds (in the node's state db)."""

    def __init__(self, db: sqlite3.Connection, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit
        self.latest: str | None = None
        self.status: dict[str, Any] | None = None
        self.opened = -1
        db.execute("CREATE TABLE IF NOT EXISTS quality_audited (submission_id TEXT PRIMARY KEY)")

    def sync(self, database: MemberDatabase) -> dict[str, Any] | None:
        """Audit verdicts not yet audited; return the newest one's status for the hub.

        Runs before every task, so it reads the reports only when a new verdict exists.
        """
        engine, schema = database.config.engine, database.config.schema_
        if engine == "spark":
            # Its verdicts are kept in a DuckDB file of their own: Spark is not started.
            try:
                with gate_books(database.config, write=False) as books:
                    read = None if books is None else self._read(books, "duckdb", None)
            except DataError:  # being written by a steward's run: read at the next task
                return self.status
        else:
            current = database.open_since
            if engine == "duckdb" and current is not None and current == self.opened:
                return self.status  # the file has stayed open: no verdict since
            with database.connect() as connection:
                self.opened = database.opened
                read = self._read(connection, engine, schema)
        if read is None:
            return self.status
        self.latest, self.status = read[0], read[2]
        found, status = read[1], read[2]
        for entry in found:
            seen = self.db.execute(
                "SELECT 1 FROM quality_audited WHERE submission_id = ?", (entry["submission_id"],)
            ).fetchone()
            if seen:
                continue
            self.audit.append(
                "quality.submission",
                {
                    "submission_id": entry["submission_id"],
                    "at": entry["at"],
                    "kind": entry["kind"],
                    "decision": entry["decision"],
                    "kept": entry["kept"],
                    "counts": entry["counts"],
                    "results": entry["results"],
                },
            )
            self.db.execute(
                "INSERT INTO quality_audited (submission_id) VALUES (?)", (entry["submission_id"],)
            )
        return status

    def _read(
        self, connection: Any, dialect: Dialect, schema: str | None
    ) -> tuple[str | None, list[dict[str, Any]], dict[str, Any] | None] | None:
        """The newest verdict's id, every verdict and the newest one's status; ``None``
        when the newest verdict is the one already read."""
        latest = latest_submission_id(connection, dialect, schema)
        if latest == self.latest:
            return None
        return (
            latest,
            submissions(connection, dialect, schema),
            latest_status(connection, dialect, schema),
        )
