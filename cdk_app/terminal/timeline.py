"""How ``runs`` and ``history`` show runs to people (rich tables: relative times, first lines of
errors, cut to a terminal's width only: ``cdk_app.terminal.output``) and to scripts (JSON with
ISO dates)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runtime.service.operations import HistoryEntry, RunSummary
from runtime.statuses import JOB_STATUSES, OPERATION_STATUSES, RunState, StatusName

RUN_STYLES = {
    RunState.QUEUED: "dim",
    RunState.RUNNING: "cyan",
    RunState.SUCCEEDED: "green",
    RunState.FAILED: "red",
    RunState.CANCELLED: "yellow",
}
STATUS_STYLES = {
    StatusName.STARTED: "cyan",
    StatusName.SUCCESS: "green",
    StatusName.FAILED: "red",
    StatusName.WORKFLOW_SUCCEEDED: "bold green",
    StatusName.WORKFLOW_FAILED: "bold red",
    StatusName.WORKFLOW_CANCELLED: "bold yellow",
    StatusName.CANCEL_REQUESTED: "magenta",
    StatusName.REDRIVE_REQUESTED: "magenta",
    StatusName.WORKFLOW_REDRIVEN: "bold magenta",
    StatusName.APPROVAL_REQUESTED: "magenta",
    StatusName.APPROVED: "magenta",
    StatusName.REJECTED: "magenta",
    StatusName.EVENT_AWAITED: "magenta",
    StatusName.EVENT_RECEIVED: "magenta",
    StatusName.CALLBACK_AWAITED: "magenta",
    StatusName.CALLBACK_COMPLETED: "magenta",
    StatusName.CALLBACK_HEARTBEAT: "dim",
    StatusName.TIMER_FIRED: "dim",
    StatusName.STATUS_REJECTED: "bold red",
}
"""Statuses not named here (the run's start, a phase's end) are shown plain."""


def first_line(text: str | None) -> str:
    """The first line, whole: a terminal's table cuts it to its width, a file keeps it all."""
    stripped = (text or "").strip()
    return stripped.splitlines()[0] if stripped else ""


def ago(then: datetime | None, now: datetime) -> str:
    """``12s ago``, ``5m ago``, ``3h ago``, ``2d ago``."""
    if then is None:
        return ""
    seconds = max(0.0, (now - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def offset(seconds: float) -> str:
    """Time since the run's first status: ``+0.042s``, ``+12.3s``, ``+4m05s``, ``+2h01m``."""
    if seconds < 10:
        return f"+{seconds:.3f}s"
    if seconds < 60:
        return f"+{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"+{minutes}m{rest:02d}s"
    return f"+{minutes // 60}h{minutes % 60:02d}m"


# --- runs ------------------------------------------------------------------------------------------


def summary_to_json(run: RunSummary) -> dict[str, Any]:
    """One run of a listing as JSON: a line of ``runs --json`` and of the console's runs page."""
    return run.to_json()


def runs_to_json(runs: Sequence[RunSummary]) -> list[dict[str, Any]]:
    return [summary_to_json(run) for run in runs]


def runs_table(runs: Sequence[RunSummary], now: datetime) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("run", "workflow", "status", "phase", "deploy", "started", "updated"):
        table.add_column(column, no_wrap=True)
    table.add_column("error", no_wrap=True, overflow="ellipsis")
    for run in runs:
        style = RUN_STYLES.get(run.status, "")
        table.add_row(
            escape(run.run_id),
            escape(run.workflow),
            f"[{style}]{run.status.value}[/]",
            escape(run.phase),
            escape(run.deploy_id or "-"),
            ago(run.created_at, now),
            ago(run.updated_at, now),
            f"[red]{escape(first_line(run.error))}[/]",
        )
    return table


def print_runs(console: Console, runs: Sequence[RunSummary], now: datetime, limit: int) -> None:
    if not runs:
        console.print("no runs")
        return
    console.print(runs_table(runs, now))
    if len(runs) == limit:
        console.print(f"[dim]the newest {limit}; --limit N shows more[/]")


# --- history ---------------------------------------------------------------------------------------


def history_to_json(entries: Sequence[HistoryEntry]) -> list[dict[str, Any]]:
    return [entry.to_json() for entry in entries]


@dataclass(frozen=True, kw_only=True)
class ItemsLine:
    """The statuses of one ``for_each`` job's items, as one line of a history: where the first
    was, and how many of each there were."""

    first: HistoryEntry
    counts: Counter[str]

    def text(self) -> str:
        counts = ", ".join(f"{count} {status}" for status, count in self.counts.items())
        return f"items: {counts}"


def with_items_summarized(entries: Sequence[HistoryEntry]) -> list[HistoryEntry | ItemsLine]:
    """The history with each fan-out's item statuses in one line, where its first item status
    was: 10,000 items would otherwise be 20,000 lines."""
    lines: list[HistoryEntry | ItemsLine] = []
    summaries: dict[tuple[str | None, str | None], ItemsLine] = {}
    for entry in entries:
        if entry.index is None:
            lines.append(entry)
            continue
        where = (entry.phase, entry.job)
        if where not in summaries:
            summaries[where] = ItemsLine(first=entry, counts=Counter())
            lines.append(summaries[where])
        summaries[where].counts[entry.status] += 1
    return lines


def attempt_label(job: str | None, status: str, attempt: int) -> str:
    """``attempt N``: a job's attempt, or on a run-level status the run's attempt once it has
    been redriven (its ``attempt`` field, as ``--json`` and the dev server's log give it)."""
    if job is not None or status in JOB_STATUSES:
        return f"attempt {attempt}"
    return f"attempt {attempt}" if attempt else ""


def _attempt(entry: HistoryEntry) -> str:
    return attempt_label(entry.job, entry.status, entry.attempt)


def _detail(entry: HistoryEntry) -> str:
    if entry.error:
        return f"[red]{escape(first_line(entry.error))}[/]"
    if entry.reason:
        return escape(f"reason: {first_line(entry.reason)}")
    if entry.status in OPERATION_STATUSES:
        return "[dim]requested[/]"
    return ""


def history_table(entries: Sequence[HistoryEntry]) -> Table:
    """One line per status, times relative to the first: the run as a timeline."""
    start = next((entry.date for entry in entries if entry.date is not None), None)
    table = Table(box=None, pad_edge=False, header_style="dim")
    table.add_column("time", no_wrap=True, justify="right")
    for column in ("phase", "job", "status", "attempt"):
        table.add_column(column, no_wrap=True)
    table.add_column("error / reason", no_wrap=True, overflow="ellipsis")
    for line in with_items_summarized(entries):
        entry = line.first if isinstance(line, ItemsLine) else line
        seconds = (
            (entry.date - start).total_seconds() if entry.date is not None and start is not None else None
        )
        if isinstance(line, ItemsLine):
            table.add_row(
                "" if seconds is None else offset(seconds),
                escape(entry.phase or ""),
                escape(entry.job or ""),
                line.text(),
                "",
                "",
            )
            continue
        style = STATUS_STYLES.get(StatusName(entry.status), "")
        table.add_row(
            "" if seconds is None else offset(seconds),
            escape(entry.phase or ""),
            escape(entry.job or ""),
            f"[{style}]{entry.status}[/]" if style else entry.status,
            _attempt(entry),
            _detail(entry),
        )
    return table


def print_history(console: Console, title: str, entries: Sequence[HistoryEntry]) -> None:
    start = next((entry.date for entry in entries if entry.date is not None), None)
    since = f" from {start.astimezone():%Y-%m-%d %H:%M:%S %Z}" if start is not None else ""
    console.print(f"[bold]{escape(title)}[/] ({len(entries)} statuses{since})")
    console.print(history_table(entries))
