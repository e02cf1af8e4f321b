"""What a load did: rows per table, rejects, unmapped codes, time taken.

A report is filled in while a load runs and stored with it (``accord_loads.report``), so
it holds counts and reasons only. The values that caused a reject go to the rejects file,
which stays at the member: a rejected value may be patient data, and the report may be
shown to the consortium's coordinators.

>>> report = LoadReport(kind="omop", source="export/")
>>> report.add_rows("person", 200)
>>> report.reject("PERSON.csv", "line 17", "year_of_birth is not an integer")
>>> report.finish()
>>> report.to_json()["rejects"]["by_reason"]
{'year_of_birth is not an integer': 1}
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from accord.errors import DataError

TOP_UNMAPPED: Final = 100
"""How many unmapped codes the report lists; the total covers all of them."""
TOP_REASONS: Final = 100
"""How many distinct reject reasons the report lists; the count covers all of them."""
EXAMPLE_REJECTS: Final = 10
"""Rejects kept in memory to show after a load; the rejects file has every one."""


@dataclass(frozen=True)
class Reject:
    """One thing that was not loaded: a row, a resource or a whole file.

    ``locator`` finds it inside ``source``: ``"line 17"``, ``"Condition/abc"``,
    ``"file"``. ``value`` is the offending value, if any; it is written to the rejects
    file only, never to the report.
    """

    source: str
    locator: str
    reason: str
    value: str | None = None


class LoadReport:
    """Counts kept while one load runs; ``to_json`` is what is stored and shown."""

    vocabulary_version: str | None
    mapping_version: str | None

    def __init__(self, *, kind: str, source: str, rejects_path: Path | None = None) -> None:
        self.kind = kind
        self.source = source
        self.rejects_path = rejects_path
        self.vocabulary_version = None
        self.mapping_version = None
        self.rows: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.unmapped_codes: Counter[tuple[str, str]] = Counter()
        self.notes: list[str] = []
        self.quality: dict[str, Any] | None = None
        self.examples: list[Reject] = []
        self.started_at = datetime.now(UTC)
        self.seconds: float | None = None
        self._started = time.monotonic()
        self._rejects_file: IO[str] | None = None
        self._rejects_written = False

    @property
    def reject_count(self) -> int:
        return self.reasons.total()

    @property
    def rows_total(self) -> int:
        return self.rows.total()

    def add_rows(self, table: str, n: int) -> None:
        """Count ``n`` rows inserted into CDM table ``table``."""
        self.rows[table] += n

    def skipped_existing(self, table: str, n: int) -> None:
        """Count ``n`` rows not inserted because an earlier load already holds them."""
        self.skipped[table] += n

    def unmapped(self, vocabulary_id: str, code: str, count: int = 1) -> None:
        """Count a source code that has no standard concept."""
        self.unmapped_codes[(vocabulary_id, code)] += count

    def note(self, text: str) -> None:
        """Record a decision the load took that a reader of the report should know."""
        self.notes.append(text)

    def reject(self, source: str, locator: str, reason: str, *, value: str | None = None) -> None:
        """Record something not loaded; appended to the rejects file at once.

        Keep ``reason`` free of values (name the field and what was expected) so rejects
        group by reason; pass the offending value as ``value``.
        """
        entry = Reject(source, locator, reason, value)
        self.reasons[reason] += 1
        if len(self.examples) < EXAMPLE_REJECTS:
            self.examples.append(entry)
        if self.rejects_path is None:
            return
        try:
            if self._rejects_file is None:
                # Truncate on first use: the file describes this load and no earlier one.
                # Line-buffered, so what was rejected survives a load that dies halfway.
                mode = "a" if self._rejects_written else "w"
                self._rejects_file = self.rejects_path.open(mode, encoding="utf-8", buffering=1)
                self._rejects_written = True
            self._rejects_file.write(json.dumps(asdict(entry), ensure_ascii=False) + "\n")
        except OSError as error:
            raise DataError(
                f"cannot write rejects file {self.rejects_path}: {error.strerror or error}",
                hint="check the folder exists, is writable and the disk has space",
            ) from error

    def finish(self) -> None:
        """Stamp the time taken and close the rejects file; calling it again re-stamps."""
        self.seconds = round(time.monotonic() - self._started, 3)
        try:
            if self._rejects_file is not None:
                self._rejects_file.close()
            elif self.rejects_path is not None and self.rejects_path.exists():
                # A file left by an earlier load must not pass for this load's rejects.
                self.rejects_path.write_text("", encoding="utf-8")
        except OSError as error:
            raise DataError(
                f"cannot write rejects file {self.rejects_path}: {error.strerror or error}"
            ) from error
        finally:
            self._rejects_file = None

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data; values that caused rejects are not in it."""
        unmapped = self.unmapped_codes.most_common(TOP_UNMAPPED)
        return {
            "kind": self.kind,
            "source": self.source,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "seconds": self.seconds,
            "vocabulary_version": self.vocabulary_version,
            "mapping_version": self.mapping_version,
            "rows": dict(sorted(self.rows.items())),
            "rows_total": self.rows_total,
            "skipped_existing": dict(sorted(self.skipped.items())),
            "rejects": {
                "count": self.reject_count,
                "by_reason": dict(self.reasons.most_common(TOP_REASONS)),
                "file": str(self.rejects_path) if self._rejects_written else None,
            },
            "unmapped": {
                "total": self.unmapped_codes.total(),
                "distinct": len(self.unmapped_codes),
                "top": [
                    {"vocabulary_id": vocabulary, "code": code, "count": count}
                    for (vocabulary, code), count in unmapped
                ],
            },
            "notes": list(self.notes),
            "quality": self.quality,
        }

    def write(self, path: Path) -> None:
        """Write ``to_json`` to ``path`` atomically: a reader sees the old file or the new."""
        text = json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n"
        try:
            handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        except OSError as error:
            raise DataError(
                f"cannot write load report {path}: {error.strerror or error}",
                hint="check the folder exists and is writable",
            ) from error
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except OSError as error:
            Path(temporary).unlink(missing_ok=True)
            raise DataError(
                f"cannot write load report {path}: {error.strerror or error}"
            ) from error
