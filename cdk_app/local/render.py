"""What people see: live progress while a run goes on (phase headers, a line per finished job)
and the summary table that ``run`` ends with and ``status`` prints."""

from __future__ import annotations

import json
from datetime import datetime

from rich.console import Console, JustifyMethod
from rich.markup import escape
from rich.table import Table

from cdk_app.local.report import JOB_RUNNING, RunReport
from runtime.definition.model import Workflow
from runtime.documents import RUN_ENDS, JobState, RunState, StatusEvent, StatusName
from runtime.store import MongoStore

STYLES = {
    JobState.SUCCEEDED: "green",
    JobState.FAILED: "red",
    JobState.SKIPPED: "dim",
    JobState.PENDING: "yellow",
    JobState.CANCELLED: "yellow",
    JOB_RUNNING: "cyan",
}
"""By what the report calls a job: its state, or ``running`` for one dispatched in a running run."""
MARKS = {
    JobState.SUCCEEDED: "✔",
    JobState.FAILED: "✘",
    JobState.SKIPPED: "·",
    JobState.PENDING: "…",
    JobState.CANCELLED: "⊘",
    JOB_RUNNING: "▸",
}
PREVIEW_CHARS = 48
NUMERIC_COLUMNS = ("attempts", "runs", "time")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _preview(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.strip().splitlines()[0] if text.strip() else ""
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


class Progress:
    """A RunObserver printing as the trigger sees statuses: in insert order, one thread."""

    def __init__(self, console: Console, workflow: Workflow, store: MongoStore) -> None:
        self.console = console
        self.workflow = workflow
        self.store = store
        self._started: dict[tuple[str, int], datetime] = {}

    def status(self, event: StatusEvent) -> None:
        status, job, phase = event.status, event.job, event.phase
        if status == StatusName.WORKFLOW_STARTED:
            self.console.print(f"[bold]{self.workflow.name}[/] run [bold]{escape(event.run_id)}[/]")
            self._phase_header(self.workflow.phase_order()[0].name)
        elif status == StatusName.STARTED and job is not None and event.date is not None:
            self._started[(job, event.attempt)] = event.date
        elif status in (StatusName.SUCCESS, StatusName.FAILED) and job is not None:
            started = self._started.get((job, event.attempt))
            seconds = (
                None if started is None or event.date is None else (event.date - started).total_seconds()
            )
            state = JobState.SUCCEEDED if status == StatusName.SUCCESS else JobState.FAILED
            detail = _preview(event.error or "") if status == StatusName.FAILED else ""
            self._job_line(job, state, event.attempt, _duration(seconds), detail)
        elif status == StatusName.PHASE_COMPLETED and phase is not None:
            self._skipped_jobs(event.run_id, phase)
            following = self.workflow.next_phase(phase)
            if following is not None:
                self._phase_header(following.name)
        elif status in RUN_ENDS.values():
            style = {StatusName.WORKFLOW_SUCCEEDED: "green", StatusName.WORKFLOW_CANCELLED: "yellow"}.get(
                status, "red"
            )
            self.console.print(f"[{style}]{status.replace('_', ' ')}[/]")

    def notification(self, subject: str, message: str) -> None:
        self.console.print(f"  [magenta]✉[/] [dim]{escape(subject)}[/]")

    def _phase_header(self, phase: str) -> None:
        self.console.rule(f"phase [bold]{escape(phase)}[/]", align="left", style="blue")

    def _job_line(self, job: str, state: str, attempt: int, duration: str, detail: str = "") -> None:
        style = STYLES[state]
        self.console.print(
            f"  [{style}]{MARKS[state]} {escape(job):<28} {state:<9}[/] attempt {attempt}  "
            f"{duration:>8}  [dim]{escape(detail)}[/]",
            no_wrap=True,
            overflow="ellipsis",
        )

    def _skipped_jobs(self, run_id: str, phase: str) -> None:
        """Skips are decisions in the run document, not statuses: read them when the phase ends."""
        run = self.store.read_run(run_id)
        for job in self.workflow.phase(phase).jobs:
            record = None if run is None else run.jobs.get(job.name)
            if record is not None and record.state == JobState.SKIPPED:
                self._job_line(job.name, JobState.SKIPPED, 0, "")


def summary_table(report: RunReport) -> Table:
    local = any(job.executions is not None for job in report.jobs)
    title = f"{report.workflow} run {report.run_id}: {report.status}"
    if report.seconds is not None:
        title += f" in {_duration(report.seconds)}"
    table = Table(title=escape(title), title_justify="left", title_style="bold", expand=True)
    # Every column but the last keeps its full width; the output or error gives way.
    columns = {
        "job": max(len(job.name) for job in report.jobs),
        "phase": max(len(job.phase) for job in report.jobs),
        "status": max(len(state) for state in STYLES),
        "attempts": len("attempts"),
        **({"runs": len("runs")} if local else {}),
        "time": len("999 ms"),
    }
    for column, width in columns.items():
        justify: JustifyMethod = "right" if column in NUMERIC_COLUMNS else "left"
        table.add_column(column, no_wrap=True, min_width=width, justify=justify)
    table.add_column("output / error", no_wrap=True, overflow="ellipsis", ratio=1)
    for job in report.jobs:
        style = STYLES[job.status]
        row = [escape(job.name), escape(job.phase), f"[{style}]{job.status}[/]", str(job.attempts)]
        if local:
            row.append(str(job.executions))
        detail = f"[red]{escape(_preview(job.error))}[/]" if job.error else escape(_preview(job.output or ""))
        row += [_duration(job.seconds), detail]
        table.add_row(*row)
    return table


def print_summary(console: Console, report: RunReport) -> None:
    console.print(summary_table(report))
    if report.status == RunState.RUNNING:
        console.print(f"current phase: {escape(report.phase)}")
    if report.error:
        console.print(f"[red]{escape(report.error.strip().splitlines()[0])}[/]")
    if report.faults and any(report.faults.values()):
        counters = ", ".join(f"{name} {count}" for name, count in report.faults.items())
        console.print(f"faults: {counters}")
