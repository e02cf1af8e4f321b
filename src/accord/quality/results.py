"""What a check found, and the gate's decision over all of them.

>>> from accord.quality.catalogue import Check
>>> check = Check("required", "person", "year_of_birth", "fatal", 0.0)
>>> result = CheckResult.judge(check, violating=2, total=10, applicable=True)
>>> result.status, result.percentage
('fail', 20.0)
>>> summary([result]).decision
'quarantined'
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

from accord.quality.catalogue import Check, Family, Severity

Status = Literal["error", "not_applicable", "fail", "pass"]
Decision = Literal["quarantined", "accepted_with_warnings", "accepted"]

STATUSES: Final[tuple[Status, ...]] = ("error", "not_applicable", "fail", "pass")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one database.

    ``status`` is, in order of precedence: ``error`` (its SQL failed), ``not_applicable``
    (the table is empty, or the optional field it tests is never filled in), ``fail``
    (more violating rows than ``threshold`` percent) or ``pass``.
    """

    check_id: str
    family: Family
    severity: Severity
    status: Status
    violating: int | None
    total: int | None
    percentage: float | None
    threshold: float
    sentence: str
    error: str | None = None

    @classmethod
    def judge(cls, check: Check, *, violating: int, total: int, applicable: bool) -> CheckResult:
        """Turn the counts one query produced into a status and a sentence."""
        if total == 0 or not applicable:
            reason = "is empty" if total == 0 else f"never has a {check.gate}"
            return cls._of(
                check,
                "not_applicable",
                f"not applicable: {check.table} {reason}",
                violating=violating,
                total=total,
            )
        percentage = 100.0 * violating / total
        status: Status = "fail" if percentage > check.threshold else "pass"
        sentence = check.sentence(count=violating, total=total)
        return cls._of(
            check, status, sentence, violating=violating, total=total, percentage=percentage
        )

    @classmethod
    def failed_to_run(cls, check: Check, reason: str) -> CheckResult:
        return cls._of(check, "error", f"could not run: {reason}", error=reason)

    @classmethod
    def _of(
        cls,
        check: Check,
        status: Status,
        sentence: str,
        *,
        violating: int | None = None,
        total: int | None = None,
        percentage: float | None = None,
        error: str | None = None,
    ) -> CheckResult:
        return cls(
            check_id=check.id,
            family=check.family,
            severity=check.severity,
            status=status,
            violating=violating,
            total=total,
            percentage=percentage,
            threshold=check.threshold,
            sentence=sentence,
            error=error,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Summary:
    """Counts by status and what the gate decides."""

    counts: dict[Status, int]
    decision: Decision

    def to_json(self) -> dict[str, Any]:
        return {"decision": self.decision, "counts": dict(self.counts)}


def summary(results: list[CheckResult]) -> Summary:
    """Count results by status and decide.

    ``quarantined`` if any fatal check fails or cannot run, or if no check found rows to
    judge (an empty submission is never a pass); ``accepted_with_warnings`` if any other
    check fails, else ``accepted``. A non-fatal check that cannot run is counted but does
    not by itself hold the data back.
    """
    counted = Counter(r.status for r in results)
    counts: dict[Status, int] = {status: counted.get(status, 0) for status in STATUSES}
    decision: Decision = "accepted"
    judged = any(r.status in ("pass", "fail") for r in results)
    if not judged or any(r.severity == "fatal" and r.status in ("fail", "error") for r in results):
        decision = "quarantined"
    elif any(r.status == "fail" for r in results):
        decision = "accepted_with_warnings"
    return Summary(counts=counts, decision=decision)
