"""How results look on a terminal: live progress per member, then one table."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from accord import protocol
from accord.analysis.glm import GlmFit
from accord.client import Client, TaskResult
from accord.frames import CONSORTIUM
from accord.query import Analysis


def run_with_progress(
    client: Client,
    analysis: Analysis,
    members: list[str] | None,
    *,
    timeout: float,
    disclosure: str = protocol.PER_MEMBER,
) -> TaskResult:
    """Submit and follow a task, one bar tracking how many members have answered."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} members"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        bar = progress.add_task("submitting", total=0)

        def update(result: TaskResult) -> None:
            waiting = [m.member for m in result.members if m.status == "pending"]
            answered = len(result.members) - len(waiting)
            label = f"waiting for {', '.join(waiting)}" if waiting else "all members answered"
            progress.update(bar, total=len(result.members), completed=answered, description=label)

        return client.run(
            analysis, members, timeout=timeout, on_update=update, disclosure=disclosure
        )


def result_table(
    result: TaskResult, *, title: str = "Federated count", sources: dict[str, str] | None = None
) -> Table:
    """Each member's disclosed figure and rule, then the total; ``sources`` adds a column
    saying in which format each member's data arrived."""
    table = Table(title=title, title_justify="left")
    table.add_column("member")
    table.add_column("kind")
    if sources is not None:
        table.add_column("data arrived as")
    table.add_column("count", justify="right")
    table.add_column("disclosure rule applied")
    for m in result.members:
        lead = [m.member, m.kind or ""] + ([sources.get(m.member, "")] if sources else [])
        if m.count is not None and m.profile is not None:
            table.add_row(*lead, m.count.display, m.count.rule)
        else:
            table.add_row(*lead, f"[red]{m.status}[/]", m.reason or "")
    if result.total is not None:
        table.add_section()
        blank = [""] * (2 if sources else 1)
        table.add_row(
            "[bold]total[/]", *blank, f"[bold]{result.total.display}[/]", result.total.rule
        )
    return table


def secure_table(result: TaskResult, *, title: str = "Secure sum") -> Table:
    """Who a secure sum's total covers and who was dropped and why, then the total of a
    count, or why nothing was released; no member's own figure exists to show."""
    secure = result.summary.get("secure") or {}
    table = Table(title=title, title_justify="left")
    table.add_column("member")
    table.add_column("kind")
    table.add_column("in the total")
    for m in result.members:
        if m.status == "done":
            table.add_row(m.member, m.kind or "", "yes")
        else:
            table.add_row(m.member, m.kind or "", f"[red]{m.status}[/] {m.reason or ''}")
    if result.total is not None:
        table.add_section()
        table.add_row("[bold]total[/]", "", f"[bold]{result.total.display}[/] {result.total.rule}")
    rounds = secure.get("rounds", 0)
    caption = f"{rounds} round{'' if rounds == 1 else 's'}; the hub saw masked vectors only"
    if secure.get("withheld"):
        caption = f"no total: {secure['withheld']} ({caption})"
    table.caption = caption
    table.caption_justify = "left"
    return table


def frame_table(result: TaskResult, *, title: str | None = None) -> Table:
    """Any analysis's result as a table: the consortium's figures from its frame, with a
    line for each member that did not answer, and why (the only lines, when none did)."""
    heading = title or f"Federated {result.analysis.replace('_', ' ')}"
    try:
        frame = result.frame()
    except ValueError as error:
        table = Table("member", "status", "reason", title=heading, title_justify="left")
        for m in result.members:
            table.add_row(m.member, m.status, m.reason or "")
        table.caption = f"no result: {error}"
        table.caption_justify = "left"
        return table
    if "member" in frame.columns and (frame["member"] == CONSORTIUM).any():
        frame = frame[frame["member"] == CONSORTIUM].drop(columns="member")
    elif frame.index.name is None and not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index(names="")
    table = Table(title=heading, title_justify="left")
    for column in frame.columns:
        table.add_column(str(column), justify="left" if frame[column].dtype == object else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*(_cell(v) for v in row))
    missing = [m for m in result.members if m.status != "done"]
    if missing:
        table.caption = "; ".join(f"{m.member}: {m.status}, {m.reason}" for m in missing)
        table.caption_justify = "left"
    return table


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def quality_table(members: list[dict[str, Any]]) -> Table:
    """One column per member; a row per check failing or erroring at some member."""
    table = Table(title="consortium data quality (latest submission per member)")
    table.add_column("check", overflow="fold")
    for member in members:
        table.add_column(member["member"], overflow="fold")
    decisions = [m["decision"] or "no submission" for m in members]
    table.add_row("[bold]decision[/]", *decisions)
    table.add_row(
        "submitted", *[(m["submission_at"] or "")[:16].replace("T", " ") for m in members]
    )
    table.add_section()
    cells: dict[str, dict[str, str]] = {}
    for index, member in enumerate(members):
        for check in member["checks"]:
            if check["status"] in ("fail", "error"):
                shown = check["status"]
                if check["percentage"] is not None:
                    shown += f" {check['percentage']:.2f}%"
                cells.setdefault(check["check_id"], {})[str(index)] = shown
    for check_id in sorted(cells):
        row = cells[check_id]
        table.add_row(check_id, *[row.get(str(i), "") for i in range(len(members))])
    return table


def coefficient_table(fit: GlmFit, *, title: str) -> Table:
    """A fitted model's coefficients with standard errors, 95% intervals and p-values."""
    table = Table(title=title, title_justify="left")
    for column in ("term", "estimate", "std. error", "95% interval", "p"):
        table.add_column(column, justify="left" if column == "term" else "right")
    for row in fit.table():
        table.add_row(
            row.name,
            f"{row.estimate:.4f}",
            f"{row.se:.4f}",
            f"{row.ci_low:.3f} to {row.ci_high:.3f}",
            "<0.001" if row.p < 0.001 else f"{row.p:.3f}",
        )
    table.caption = (
        f"{fit.family} model over {fit.n:,} persons; {fit.iterations} Newton steps, "
        f"deviance {fit.deviance:.2f}"
    )
    return table
