"""A task's results as data frames a researcher can work with, annotated with their
disclosure: pandas by default, polars on request.

Every frame holds one row per figure, and beside each figure what happened to it on its
way out: ``suppressed`` (how many member figures were left out as small: for a member's
own row 1 or 0, for the consortium's row the number of members), ``rule`` (the rule that
produced it) and, for a member that answered nothing, ``reason``. The same columns exist
in pandas and polars, so nothing is lost in conversion; pandas frames also carry the
task's annotations in ``DataFrame.attrs["disclosure"]``.

Per analysis (``member`` is a member's id, or ``"consortium"`` for the combined figure):

- count_persons: member, status, count, display, suppressed, rule, reason;
- count_by: member, one column per stratum variable, count, display, suppressed;
- histogram: member, bin (``[0, 20)``; the last bin is closed), bin_low, bin_high, count,
  display, suppressed, with rows ``below``, ``above`` and ``unknown`` for values below
  the first edge, above the last one and not known;
- summary: statistic, value, note (n, mean, sd, and quantiles from the histogram);
- correlation: one row per variable, one column per variable (in polars, a first
  ``variable`` column names the rows);
- kaplan_meier: time, at_risk, events, censored, survival, ci_low, ci_high;
- distinct_persons: estimate, low, high, relative_standard_error, persons_without_id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

if TYPE_CHECKING:
    import polars as pl

    from accord.client import TaskResult

CONSORTIUM = "consortium"


def frame(result: TaskResult, *, kind: Literal["pandas", "polars"] = "pandas") -> Any:
    """``result`` as a frame (see the module's table of columns)."""
    build = BUILDERS.get(result.analysis)
    if build is None:
        raise ValueError(f"no frame for {result.analysis} results")
    table = build(result)
    table.attrs["disclosure"] = disclosure_notes(result)
    if kind == "polars":
        return to_polars(table)
    return table


def to_polars(table: pd.DataFrame) -> pl.DataFrame:
    import polars as pl

    if not isinstance(table.index, pd.RangeIndex):
        table = table.reset_index(names="variable")  # polars frames have no row labels
    return pl.from_pandas(table)


def disclosure_notes(result: TaskResult) -> dict[str, Any]:
    """What a reader of the figures must know: each member's profile or reason for not
    answering, and the secure-sum round when the task used one."""
    members = {
        m.member: (
            {"status": m.status, "profile": m.profile.rule if m.profile else None}
            if m.status == "done"
            else {"status": m.status, "reason": m.reason}
        )
        for m in result.members
    }
    notes: dict[str, Any] = {"task": result.task_id, "members": members}
    secure = result.summary.get("secure")
    if isinstance(secure, dict):
        notes["secure_sum"] = {
            k: v for k, v in secure.items() if k in {"round", "members", "dropped"}
        }
    return notes


def _counts(result: TaskResult) -> pd.DataFrame:
    rows = []
    for m in result.members:
        count = m.count
        rows.append(
            {
                "member": m.member,
                "status": m.status,
                "count": None if count is None else count.value,
                "display": None if count is None else count.display,
                "suppressed": int(bool(count and count.suppressed)),
                "rule": None if count is None else count.rule,
                "reason": m.reason,
            }
        )
    total = result.summary.get("total")
    if isinstance(total, dict):
        rows.append(
            {
                "member": CONSORTIUM,
                "status": result.status,
                "count": total.get("value"),
                "display": total.get("display"),
                "suppressed": sum(1 for m in result.members if m.count and m.count.suppressed),
                "rule": total.get("rule"),
                "reason": None,
            }
        )
    return _typed(pd.DataFrame(rows), counts=("count", "suppressed"))


def _cells(result: TaskResult) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    names: list[str] = []
    for m in result.members:
        released = (m.result or {}).get("cells")
        if not isinstance(released, dict):
            continue
        names = released["variables"]
        for cell in released["cells"]:
            count = cell["count"]
            rows.append(
                {
                    "member": m.member,
                    **dict(zip(names, cell["key"], strict=True)),
                    "count": count,
                    "display": _shown(count, m),
                    "suppressed": int(count is None),
                }
            )
    combined = result.summary.get("cells")
    if isinstance(combined, dict):
        names = combined["variables"]
        for cell in combined["cells"]:
            rows.append(
                {
                    "member": CONSORTIUM,
                    **dict(zip(names, cell["key"], strict=True)),
                    "count": cell["value"],
                    "display": cell["display"],
                    "suppressed": cell["suppressed"],
                }
            )
    columns = ["member", *names, "count", "display", "suppressed"]
    return _typed(pd.DataFrame(rows, columns=columns), counts=("count", "suppressed"))


def _histogram(result: TaskResult) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []

    def add(member: str, released: dict[str, Any], combined: bool) -> None:
        edges = released["edges"]
        outside = float("nan")
        cells = [
            *(
                (
                    f"[{edges[i]:g}, {edges[i + 1]:g}{']' if i == len(edges) - 2 else ')'}",
                    edges[i],
                    edges[i + 1],
                    c,
                )
                for i, c in enumerate(released["counts"])
            ),
            ("below", outside, edges[0], released["below"]),
            ("above", edges[-1], outside, released["above"]),
            ("unknown", outside, outside, released["missing"]),
        ]
        for name, low, high, count in cells:
            value, shown, suppressed = (
                (count["value"], count["display"], count["suppressed"])
                if combined
                else (count, "<" if count is None else str(count), int(count is None))
            )
            rows.append(
                {
                    "member": member,
                    "bin": name,
                    "bin_low": low,
                    "bin_high": high,
                    "count": value,
                    "display": shown,
                    "suppressed": suppressed,
                }
            )

    for m in result.members:
        released = (m.result or {}).get("histogram")
        if isinstance(released, dict):
            add(m.member, released, combined=False)
    combined = result.summary.get("histogram")
    if isinstance(combined, dict):
        add(CONSORTIUM, combined, combined=True)
    columns = ["member", "bin", "bin_low", "bin_high", "count", "display", "suppressed"]
    return _typed(pd.DataFrame(rows, columns=columns), counts=("count", "suppressed"))


def _summary(result: TaskResult) -> pd.DataFrame:
    summary = _combined(result, "summary")
    rows: list[tuple[str, float | None, str | None]] = [
        ("n", summary["n"], None),
        ("mean", summary["mean"], None),
        ("sd", summary["sd"], None),
        ("unknown", summary["missing"], None),
    ]
    for q in summary["quantiles"]:
        label = "median" if q["p"] == 0.5 else f"q{round(q['p'] * 100):02d}"
        note = "estimated from the histogram, good to one bin"
        if q["value"] is None:
            note = f"{q['outside']} the histogram's edges"
        rows.append((label, q["value"], note))
    return pd.DataFrame(rows, columns=["statistic", "value", "note"])


def _correlation(result: TaskResult) -> pd.DataFrame:
    found = _combined(result, "correlation")
    if "matrix" not in found:
        raise ValueError(f"the correlation was withheld: {found.get('withheld')}")
    names = found["variables"]
    table = pd.DataFrame(found["matrix"], index=names, columns=names)
    table.attrs["n"] = found["n"]
    return table


def _survival(result: TaskResult) -> pd.DataFrame:
    curve = _combined(result, "curve")
    columns = ["at_risk", "events", "censored", "survival", "ci_low", "ci_high"]
    return pd.DataFrame({"time": curve["times"], **{c: curve[c] for c in columns}})


def _distinct(result: TaskResult) -> pd.DataFrame:
    estimate = _combined(result, "distinct")
    without = result.summary.get("without_id") or {}
    return pd.DataFrame(
        [
            {
                "estimate": estimate["value"],
                "low": estimate["low"],
                "high": estimate["high"],
                "relative_standard_error": estimate["relative_standard_error"],
                "persons_without_id": without.get("display"),
            }
        ]
    )


def _combined(result: TaskResult, key: str) -> dict[str, Any]:
    """The consortium's figure: per-member results combined, or a secure sum's total."""
    secure = result.summary.get("secure")
    source = secure if isinstance(secure, dict) else result.summary
    found = source.get(key)
    if not isinstance(found, dict):
        withheld = source.get("withheld")
        if withheld:
            raise ValueError(f"the result was withheld: {withheld}")
        raise ValueError(f"the task holds no combined {key} (no member answered?)")
    return found


def _shown(count: int | None, member: Any) -> str:
    if count is not None:
        return str(count)
    return f"<{member.profile.threshold}" if member.profile else "suppressed"


def _typed(table: pd.DataFrame, *, counts: tuple[str, ...]) -> pd.DataFrame:
    """Counts as nullable integers, so a suppressed figure is <NA>, never a float NaN."""
    return table.astype({c: "Int64" for c in counts})


BUILDERS = {
    "count_persons": _counts,
    "count_by": _cells,
    "histogram": _histogram,
    "summary": _summary,
    "correlation": _correlation,
    "kaplan_meier": _survival,
    "distinct_persons": _distinct,
}
