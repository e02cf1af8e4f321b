"""Quality reports as HTML pages a person reads: one submission's, and the consortium's.

:func:`render_report` turns the JSON report document of one submission
(``accord-quality-report/1``) into the page a member's data steward opens: the decision
and what it means, each failed check with its numbers, a plain-language sentence and
example records, the trend over earlier submissions, and every passing check folded away
at the end. :func:`render_consortium_table` sets the latest result of every member side
by side for the hub; its input carries no record ids, so neither does the page.

Both pages are one self-contained HTML5 file with inline CSS and no script: nothing is
fetched from a network, so they open offline and can be mailed or archived as they are.
Every value in the input is treated as untrusted and escaped (Jinja2 with autoescape on),
and a Content-Security-Policy forbids scripts and remote content should anything slip past.

>>> page = render_report({
...     "member": "northgate-hospital",
...     "submission": {"id": "3f2a", "at": "2026-03-15T10:04:00Z"},
...     "decision": "accepted",
...     "counts": {"error": 0, "not_applicable": 0, "fail": 0, "pass": 1},
...     "results": [],
... })
>>> "Submission of 15 March 2026 — accepted" in page
True
>>> render_consortium_table([{"member": "<b>", "decision": "accepted"}]).count("&lt;b&gt;")
1
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import jinja2

STATUS_LABELS: Final[dict[str, str]] = {
    "fail": "failed",
    "error": "could not run",
    "pass": "passed",
    "not_applicable": "not applicable",
}
DECISION_LABELS: Final[dict[str, str]] = {
    "quarantined": "quarantined",
    "accepted_with_warnings": "accepted with warnings",
    "accepted": "accepted",
}
DECISION_MEANINGS: Final[dict[str, str]] = {
    "quarantined": (
        "This submission is held back: consortium analyses cannot see it until the fatal "
        "problems below are fixed and the data is submitted again."
    ),
    "accepted_with_warnings": (
        "This submission is visible to consortium analyses. Some checks failed; please fix "
        "them before the next submission."
    ),
    "accepted": "This submission is visible to consortium analyses. No check failed.",
}
FAMILIES: Final = ("conformance", "completeness", "plausibility")
SEVERITIES: Final = ("fatal", "convention", "characterisation")
# Statuses in the order a reader wants them, worst first.
STATUS_ORDER: Final = ("fail", "error", "pass", "not_applicable")

_MONTHS: Final = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

# Geometry of the trend chart, in SVG user units.
_BAR_PITCH: Final = 76
_BAR_WIDTH: Final = 40
_PLOT_HEIGHT: Final = 120
_PLOT_TOP: Final = 22
_CHART_HEIGHT: Final = _PLOT_TOP + _PLOT_HEIGHT + 44


def render_report(document: Mapping[str, Any]) -> str:
    """The HTML page of one submission's quality report, from its JSON document."""
    return _environment().get_template("report.html").render(report=_report(document))


def render_consortium_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The hub's page of every member's latest quality result, one column per member.

    A row is listed for each check that fails or could not run at one member at least;
    checks that pass or do not apply everywhere are only counted.
    """
    return _environment().get_template("consortium.html").render(table=_consortium(rows))


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("accord.quality", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


# Formatting ------------------------------------------------------------------------------


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_date(value: object) -> str:
    """``'2026-03-15T10:04:00Z'`` as ``'15 March 2026'``; anything unreadable as it is.

    >>> format_date("2026-03-15T10:04:00Z")
    '15 March 2026'
    """
    moment = _moment(value)
    if moment is None:
        return "an unknown date" if value is None else str(value)
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


def format_moment(value: object) -> str:
    """A timestamp as a date and a UTC time.

    >>> format_moment("2026-03-15T11:04:00+01:00")
    '15 March 2026, 10:04 UTC'
    """
    moment = _moment(value)
    if moment is None:
        return format_date(value)
    return f"{format_date(value)}, {moment:%H:%M} UTC"


def _short_date(value: object) -> str:
    moment = _moment(value)
    if moment is None:
        return "?"
    return f"{moment.day} {_MONTHS[moment.month - 1][:3]} {moment.year}"


def format_percentage(value: object) -> str:
    """A percentage with two decimals, or with two significant digits below 0.1%.

    A small share of violating rows keeps its size and never reads as ``0.00%``.

    >>> [format_percentage(v) for v in (3.1205, 0.0, 100.0, 0.0249, 0.00123, None)]
    ['3.12%', '0%', '100.00%', '0.025%', '0.0012%', '—']
    """
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        return "—"
    if value == 0:
        return "0%"
    if abs(value) >= 0.1:
        return f"{value:.2f}%"
    decimals = 1 - math.floor(math.log10(abs(value)))
    return f"{value:.{decimals}f}%"


def _threshold(value: object) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "—"
    return f"{value:g}%"


def _count(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "—" if value is None else str(value)


def _text(value: object, missing: str = "—") -> str:
    return missing if value is None or value == "" else str(value)


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def _label(labels: Mapping[str, str], value: object) -> str:
    text = str(value)
    return labels.get(text, text.replace("_", " "))


def _css_token(value: object) -> str:
    # Only known words become class names; anything else gets the neutral style.
    text = str(value)
    known = (*STATUS_LABELS, *DECISION_LABELS, *SEVERITIES)
    return text if text in known else "unknown"


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value):
        return float(value)
    return None


def _integer(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# One submission ------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    id: str
    source: str | None


@dataclass(frozen=True)
class Change:
    """How a failed check compares with the previous submission."""

    kind: str  # up, down, same, new, was
    arrow: str
    text: str


@dataclass(frozen=True)
class Problem:
    """A failed or errored check, ready to show."""

    check_id: str
    family: str
    severity: str
    severity_class: str
    status_label: str
    status_class: str
    sentence: str
    error: str | None
    percentage: str
    rows: str
    threshold: str
    threshold_reason: str | None
    change: Change
    examples: tuple[Example, ...]
    examples_note: str | None


@dataclass(frozen=True)
class Quiet:
    """A passing or not-applicable check, listed in the folded section."""

    check_id: str
    severity: str
    status_label: str
    status_class: str
    sentence: str


@dataclass(frozen=True)
class TrendPoint:
    when: str
    short_when: str
    submission_id: str
    decision_label: str
    decision_class: str
    fail: int
    error: int
    passed: int
    not_applicable: int
    current: bool
    x: int
    y: int
    height: int


@dataclass(frozen=True)
class Trend:
    points: tuple[TrendPoint, ...]
    width: int
    height: int
    baseline: int
    label_y: int
    bar_width: int
    summary: str


@dataclass(frozen=True)
class StatusCount:
    label: str
    css: str
    count: str


@dataclass(frozen=True)
class Report:
    title: str
    headline: str
    member: str
    decision_label: str
    decision_class: str
    decision_meaning: str
    details: tuple[tuple[str, str], ...]
    counts: tuple[StatusCount, ...]
    problems: tuple[Problem, ...]
    trend: Trend | None
    quiet: tuple[tuple[str, tuple[Quiet, ...]], ...]
    quiet_summary: str


def _report(document: Mapping[str, Any]) -> Report:
    submission: Mapping[str, Any] = document.get("submission") or {}
    results: list[Mapping[str, Any]] = list(document.get("results") or [])
    decision = str(document.get("decision", ""))
    counts: Mapping[str, Any] = document.get("counts") or {}
    when = submission.get("at")
    headline = (
        f"Submission of {format_date(when)} — {_label(DECISION_LABELS, decision)}: "
        f"{_reason(decision, results, counts)}"
    )
    member = _text(document.get("member"), "unnamed member")
    load_ids = [str(i) for i in submission.get("load_ids") or []]
    details = [
        ("Member", member),
        ("Submitted", format_moment(when)),
        ("Submission", _text(submission.get("id"))),
        ("Kind", _text(submission.get("kind"))),
        ("Source", _text(submission.get("source"))),
        ("Database", _text(document.get("database"))),
        ("Loads", ", ".join(load_ids) or "—"),
        (
            "Checks run",
            f"{_count(document.get('checks_run', len(results)))}"
            + _duration(document.get("duration_seconds")),
        ),
    ]
    quiet = [r for r in results if r.get("status") in ("pass", "not_applicable")]
    return Report(
        title=f"Data quality: {member} — {format_date(when)}",
        headline=headline,
        member=member,
        decision_label=_label(DECISION_LABELS, decision),
        decision_class=_css_token(decision),
        decision_meaning=DECISION_MEANINGS.get(decision, ""),
        details=tuple(details),
        counts=tuple(
            StatusCount(STATUS_LABELS[s], s, _count(_integer(counts.get(s)))) for s in STATUS_ORDER
        ),
        problems=tuple(
            _problem(r, document.get("example_limit"), rolled_back=document.get("kept") is False)
            for r in sorted(
                (r for r in results if r.get("status") in ("fail", "error")), key=_problem_order
            )
        ),
        trend=_trend(document.get("trend") or [], str(submission.get("id", ""))),
        quiet=_by_family(quiet),
        quiet_summary=(
            f"{_plural(sum(r.get('status') == 'pass' for r in quiet), 'check')} passed, "
            f"{_count(sum(r.get('status') == 'not_applicable' for r in quiet))} not applicable"
        ),
    )


def _reason(decision: str, results: list[Mapping[str, Any]], counts: Mapping[str, Any]) -> str:
    def number(severity: str | None, status: str) -> int:
        return sum(
            1
            for r in results
            if r.get("status") == status and (severity is None or r.get("severity") == severity)
        )

    if decision == "quarantined":
        parts = []
        if failed := number("fatal", "fail"):
            parts.append(f"{_plural(failed, 'fatal check')} failed")
        if errored := number("fatal", "error"):
            parts.append(f"{_plural(errored, 'fatal check')} could not run")
        return " and ".join(parts) or "no check found any rows to judge"
    failed, errored = _integer(counts.get("fail")), _integer(counts.get("error"))
    parts = []
    if failed:
        parts.append(f"{_plural(failed, 'check')} failed")
    if errored:
        parts.append(f"{_plural(errored, 'check')} could not run")
    if parts:
        return " and ".join(parts)
    return f"all {_plural(_integer(counts.get('pass')), 'applicable check')} passed"


def _duration(value: object) -> str:
    seconds = _number(value)
    return "" if seconds is None else f" in {seconds:.2f} s"


def _problem_order(result: Mapping[str, Any]) -> tuple[int, int, float, str]:
    percentage = _number(result.get("percentage"))
    return (
        0 if result.get("severity") == "fatal" else 1,
        1 if percentage is None else 0,
        -(percentage or 0.0),
        str(result.get("check_id", "")),
    )


def _problem(
    result: Mapping[str, Any], example_limit: object, *, rolled_back: bool = False
) -> Problem:
    status = str(result.get("status"))
    examples = tuple(
        Example(
            id=str(e.get("id")),
            source=None if e.get("source") is None else str(e.get("source")),
        )
        for e in result.get("examples") or []
    )
    violating = result.get("violating")
    note = None
    if examples and isinstance(violating, int) and violating > len(examples):
        note = f"first {len(examples)} of {violating:,}"
    elif not examples and status == "fail":
        limit = _integer(example_limit)
        note = "no examples available" if limit else "examples not collected"
    if examples and rolled_back:
        # The load was rolled back: its ids were never kept and may be given out again.
        rolled = "rows not kept (the load was rolled back): find them by their source"
        note = f"{note}; {rolled}" if note else rolled
    error = result.get("error")
    sentence = str(result.get("sentence") or "")
    total = result.get("total")
    return Problem(
        check_id=str(result.get("check_id", "")),
        family=str(result.get("family", "")),
        severity=str(result.get("severity", "")),
        severity_class=_css_token(result.get("severity")),
        status_label=_label(STATUS_LABELS, status),
        status_class=_css_token(status),
        sentence=sentence,
        error=None if error is None or str(error) in sentence else str(error),
        percentage=format_percentage(result.get("percentage")),
        rows=(
            f"{_count(violating)} of {_count(total)} rows"
            if isinstance(violating, int) and isinstance(total, int)
            else ""
        ),
        threshold=_threshold(result.get("threshold")),
        threshold_reason=(
            None if result.get("threshold_reason") is None else str(result["threshold_reason"])
        ),
        change=_change(result),
        examples=examples,
        examples_note=note,
    )


def _change(result: Mapping[str, Any]) -> Change:
    previous = result.get("previous")
    if not isinstance(previous, Mapping):
        return Change("new", "", "new: not in the last submission")
    before_status = str(previous.get("status", ""))
    before, now = _number(previous.get("percentage")), _number(result.get("percentage"))
    if before is None or now is None:
        return Change("was", "", f"last time: {_label(STATUS_LABELS, before_status)}")
    then = format_percentage(before)
    also = "" if before_status == "fail" else f", {_label(STATUS_LABELS, before_status)} then"
    if format_percentage(now) == then:
        return Change("same", "=", f"unchanged from {then}{also}")
    if now > before:
        return Change("up", "↑", f"up from {then}{also}")
    return Change("down", "↓", f"down from {then}{also}")


def _trend(entries: Iterable[Mapping[str, Any]], current_id: str) -> Trend | None:
    entries = list(entries)
    if not entries:
        return None
    fails = [_integer((e.get("counts") or {}).get("fail")) for e in entries]
    most = max(fails) or 1
    baseline = _PLOT_TOP + _PLOT_HEIGHT
    points = []
    for index, (entry, fail) in enumerate(zip(entries, fails, strict=True)):
        counts = entry.get("counts") or {}
        height = round(_PLOT_HEIGHT * fail / most)
        height = max(height, 2)  # a zero still shows as a sliver on the axis
        decision = str(entry.get("decision", ""))
        submission_id = str(entry.get("submission_id", ""))
        points.append(
            TrendPoint(
                when=format_moment(entry.get("at")),
                short_when=_short_date(entry.get("at")),
                submission_id=submission_id,
                decision_label=_label(DECISION_LABELS, decision),
                decision_class=_css_token(decision),
                fail=fail,
                error=_integer(counts.get("error")),
                passed=_integer(counts.get("pass")),
                not_applicable=_integer(counts.get("not_applicable")),
                current=submission_id == current_id,
                x=12 + index * _BAR_PITCH + (_BAR_PITCH - _BAR_WIDTH) // 2,
                y=baseline - height,
                height=height,
            )
        )
    return Trend(
        points=tuple(points),
        width=24 + len(points) * _BAR_PITCH,
        height=_CHART_HEIGHT,
        baseline=baseline,
        label_y=baseline + 20,
        bar_width=_BAR_WIDTH,
        summary="Failed checks per submission, oldest first: "
        + "; ".join(f"{p.short_when}: {p.fail}" for p in points),
    )


def _by_family(results: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, tuple[Quiet, ...]], ...]:
    groups: dict[str, list[Quiet]] = defaultdict(list)
    for r in sorted(results, key=lambda r: str(r.get("check_id", ""))):
        status = str(r.get("status"))
        groups[str(r.get("family", "other"))].append(
            Quiet(
                check_id=str(r.get("check_id", "")),
                severity=str(r.get("severity", "")),
                status_label=_label(STATUS_LABELS, status),
                status_class=_css_token(status),
                sentence=str(r.get("sentence") or ""),
            )
        )
    order = [f for f in FAMILIES if f in groups] + sorted(set(groups) - set(FAMILIES))
    return tuple((family, tuple(groups[family])) for family in order)


# The consortium ------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    name: str
    submitted: str
    decision_label: str
    decision_class: str
    counts: tuple[str, ...]  # in STATUS_ORDER


@dataclass(frozen=True)
class Cell:
    status_label: str
    status_class: str
    percentage: str


@dataclass(frozen=True)
class CheckRow:
    check_id: str
    kind: str
    subject: str
    severity: str
    severity_class: str
    cells: tuple[Cell | None, ...]
    failing_at: int


@dataclass(frozen=True)
class Consortium:
    headline: str
    members: tuple[Member, ...]
    count_labels: tuple[tuple[str, str], ...]
    rows: tuple[CheckRow, ...]
    clean_checks: int


def _consortium(rows: Sequence[Mapping[str, Any]]) -> Consortium:
    members = tuple(
        Member(
            name=_text(row.get("member"), "unnamed member"),
            submitted=format_moment(row.get("submission_at", row.get("at"))),
            decision_label=_label(DECISION_LABELS, row.get("decision")),
            decision_class=_css_token(row.get("decision")),
            counts=tuple(_count(_integer((row.get("counts") or {}).get(s))) for s in STATUS_ORDER),
        )
        for row in rows
    )
    by_member: list[dict[str, Mapping[str, Any]]] = [
        {str(c.get("check_id", "")): c for c in row.get("checks") or []} for row in rows
    ]
    every_check = sorted({check_id for checks in by_member for check_id in checks})
    table: list[CheckRow] = []
    for check_id in every_check:
        found = [checks.get(check_id) for checks in by_member]
        failing = sum(1 for c in found if c is not None and c.get("status") in ("fail", "error"))
        if not failing:
            continue
        severity = next(str(c.get("severity", "")) for c in found if c is not None)
        kind, subject = _split_check_id(check_id)
        table.append(
            CheckRow(
                check_id=check_id,
                kind=kind,
                subject=subject,
                severity=severity,
                severity_class=_css_token(severity),
                cells=tuple(
                    None
                    if c is None
                    else Cell(
                        status_label=_label(STATUS_LABELS, c.get("status")),
                        status_class=_css_token(c.get("status")),
                        percentage=(
                            format_percentage(c.get("percentage"))
                            if c.get("status") in ("fail", "pass")
                            else ""
                        ),
                    )
                    for c in found
                ),
                failing_at=failing,
            )
        )
    table.sort(key=lambda r: (_severity_rank(r.severity), -r.failing_at, r.check_id))
    return Consortium(
        headline=_consortium_headline(rows),
        members=members,
        count_labels=tuple((STATUS_LABELS[s], s) for s in STATUS_ORDER),
        rows=tuple(table),
        clean_checks=len(every_check) - len(table),
    )


def _consortium_headline(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "Consortium data quality: no member has submitted data yet"
    decided: dict[str, int] = defaultdict(int)
    for row in rows:
        decided[str(row.get("decision", ""))] += 1
    order = [d for d in DECISION_LABELS if d in decided] + sorted(
        set(decided) - set(DECISION_LABELS)
    )
    parts = ", ".join(f"{decided[d]} {_label(DECISION_LABELS, d)}" for d in order)
    return f"Consortium data quality — {_plural(len(rows), 'member')}: {parts}"


def _split_check_id(check_id: str) -> tuple[str, str]:
    """``conformance.concept.person.gender_concept_id`` as ``('conformance · concept',
    'person.gender_concept_id')``; an id of another shape stays whole."""
    parts = check_id.split(".")
    if len(parts) < 3:
        return "", check_id
    return f"{parts[0]} · {parts[1]}", ".".join(parts[2:])


def _severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)
