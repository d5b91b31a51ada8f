"""What people see: live progress while a run goes on (phase headers, a line per finished job)
and the summary table that ``run`` ends with and ``status`` prints."""

from __future__ import annotations

import json
import time
from datetime import datetime

from rich import box
from rich.console import Console, ConsoleOptions, JustifyMethod, RenderResult
from rich.live import Live
from rich.markup import escape
from rich.measure import Measurement
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from cdk_app.terminal.output import rule_width, uncut
from runtime.definition.model import Workflow
from runtime.documents.run import StatusEvent
from runtime.service.approvals import approval_commands
from runtime.service.callbacks import awaited_token, complete_command
from runtime.service.events import send_event_command
from runtime.service.run_view import JOB_RUNNING, JobReport, RunReport
from runtime.statuses import RUN_ENDS, JobState, RunState, StatusName
from runtime.store.mongo import MongoStore

STYLES = {
    JobState.SUCCEEDED: "green",
    JobState.FAILED: "red",
    JobState.SKIPPED: "dim",
    JobState.UPSTREAM_FAILED: "red dim",
    JobState.PENDING: "yellow",
    JobState.CANCELLED: "yellow",
    JobState.WAITING: "magenta",
    JOB_RUNNING: "cyan",
}
"""By what the report calls a job: its state, or ``running`` for one dispatched in a running run."""
MARKS = {
    JobState.SUCCEEDED: "✔",
    JobState.FAILED: "✘",
    JobState.SKIPPED: "·",
    JobState.UPSTREAM_FAILED: "↯",
    JobState.PENDING: "…",
    JobState.CANCELLED: "⊘",
    JobState.WAITING: "⧖",
    JOB_RUNNING: "▸",
}
NUMERIC_COLUMNS = ("attempts", "runs", "time")
OUTPUT_COLUMN = "output / error"
JOB_INDENT = "  "
"""Jobs are listed under a heading row per phase, indented by this."""
CUT = " … "


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _one_line(value: object) -> str:
    """A value as one line of text: JSON for outputs, the first line of an error."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.strip().splitlines()[0] if text.strip() else ""


def cut_middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, cut in the middle: both ends stay readable (the
    first and the last keys of an object, the type of an error and its last words)."""
    if len(text) <= width:
        return text
    if width <= len(CUT) + 1:
        return text[: width - 1] + "…" if width > 0 else ""
    kept = width - len(CUT)
    return text[: (kept + 1) // 2].rstrip() + CUT + text[len(text) - kept // 2 :].lstrip()


class Preview:
    """A one-line value that takes the width the table gives its column and is cut in the middle
    to fit it, so a wide terminal shows more of it and a narrow one still shows both ends."""

    def __init__(self, value: object, style: str = "") -> None:
        self.text = _one_line(value)
        self.style = style

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(min(len(self.text), len(CUT) + 2), max(len(self.text), 1))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text(cut_middle(self.text, options.max_width), style=self.style, no_wrap=True)


class Progress:
    """A RunObserver printing as the trigger sees statuses: in insert order, one thread.
    ``store_arguments`` (``--mongo-uri URI``) go with each command it prints, so that the command
    reaches this run's database from another shell as printed."""

    def __init__(
        self, console: Console, workflow: Workflow, store: MongoStore, store_arguments: str = ""
    ) -> None:
        self.console = console
        self.workflow = workflow
        self.store = store
        self.store_arguments = store_arguments
        self._started: dict[tuple[str, int], datetime] = {}
        self._first_item: dict[str, datetime] = {}
        """When the first item of each fan-out reported."""
        self._fan_outs = LiveLines(console)

    def status(self, event: StatusEvent) -> None:
        status, job, phase = event.status, event.job, event.phase
        if event.index is not None and job is not None:
            self._item(event, job)
            return
        if status == StatusName.WORKFLOW_STARTED:
            self.console.print(f"[bold]{self.workflow.name}[/] run [bold]{escape(event.run_id)}[/]")
            self._phase_header(self.workflow.phase_order()[0].name)
        elif status == StatusName.STARTED and job is not None and event.date is not None:
            self._started[(job, event.attempt)] = event.date
            self._job_line(job, JOB_RUNNING, event.attempt, "")
        elif status == StatusName.APPROVAL_REQUESTED and job is not None:
            self._job_line(job, JobState.WAITING, event.attempt, "", event.reason or "approval requested")
            for command in approval_commands(event.run_id, job):
                answer = f"{command} {self.store_arguments}".rstrip()
                self.console.print(f"      [magenta]{escape(answer)}[/]", soft_wrap=True)
        elif status == StatusName.EVENT_AWAITED and job is not None and event.reason is not None:
            self._job_line(job, JobState.WAITING, event.attempt, "", f"waits for event {event.reason}")
            command = (
                f"{send_event_command(event.workflow, event.reason, event.run_id)} {self.store_arguments}"
            )
            self.console.print(f"      [magenta]{escape(command.rstrip())}[/]", soft_wrap=True)
        elif status == StatusName.CALLBACK_AWAITED and job is not None:
            self._job_line(job, JobState.WAITING, event.attempt, "", "waits for its callback")
            token = awaited_token(self.store, event)
            if token is not None:
                command = f"{complete_command(token)} {self.store_arguments}".rstrip()
                self.console.print(f"      [magenta]{escape(command)}[/]", soft_wrap=True)
        elif status in (StatusName.SUCCESS, StatusName.FAILED) and job is not None:
            started = self._started.pop((job, event.attempt), None)
            seconds = (
                None if started is None or event.date is None else (event.date - started).total_seconds()
            )
            state = JobState.SUCCEEDED if status == StatusName.SUCCESS else JobState.FAILED
            detail = event.error or "" if status == StatusName.FAILED else ""
            if job in self._first_item:
                # A fan-out's end: one line for all its items.
                started = self._first_item[job]
                seconds = None if event.date is None else (event.date - started).total_seconds()
                detail = self._fan_out_summary(event.run_id, job) or detail
                self._fan_outs.refresh(self._active(event.run_id))
            self._job_line(job, state, event.attempt, _duration(seconds), detail)
        elif status == StatusName.PHASE_COMPLETED and phase is not None:
            self._skipped_jobs(event.run_id, phase)
            following = self.workflow.next_phase(phase)
            if following is not None:
                self._phase_header(following.name)
        elif status in RUN_ENDS.values():
            self._fan_outs.stop()
            style = {StatusName.WORKFLOW_SUCCEEDED: "green", StatusName.WORKFLOW_CANCELLED: "yellow"}.get(
                status, "red"
            )
            self.console.print(f"[{style}]{status.replace('_', ' ')}[/]")

    def _item(self, event: StatusEvent, job: str) -> None:
        """An item of a fan-out: no line of its own; on a terminal, a line per fan-out in flight
        with its counts, redrawn a few times a second."""
        if event.date is not None:
            self._first_item.setdefault(job, event.date)
        if self._fan_outs.due():
            self._fan_outs.refresh(self._active(event.run_id))

    def _active(self, run_id: str) -> list[str]:
        if not self.console.is_terminal:
            return []
        run = self.store.read_run(run_id)
        return [
            f"  {MARKS[JOB_RUNNING]} {name:<28} {record.fan_out.summary()}"
            for name, record in (run.jobs.items() if run is not None else ())
            if record.fan_out is not None and record.state == JobState.DISPATCHED
        ]

    def _fan_out_summary(self, run_id: str, job: str) -> str:
        run = self.store.read_run(run_id)
        record = None if run is None else run.jobs.get(job)
        return "" if record is None or record.fan_out is None else record.fan_out.summary()

    def notification(self, subject: str, message: str) -> None:
        self.console.print(f"  [magenta]✉[/] [dim]{escape(subject)}[/]")

    def tick(self, now: datetime) -> None:
        """The jobs still running (from their ``started`` report), each with its elapsed time;
        the runner calls this every few seconds while a run goes on."""
        for (job, attempt), started in sorted(self._started.items()):
            self._job_line(job, JOB_RUNNING, attempt, _duration((now - started).total_seconds()))

    def _phase_header(self, phase: str) -> None:
        heading = Rule(f"phase [bold]{escape(phase)}[/]", align="left", style="blue")
        self.console.print(heading, width=rule_width(self.console))

    def _job_line(self, job: str, state: str, attempt: int, duration: str, detail: str = "") -> None:
        style = STYLES[state]
        line = Text.assemble(
            (f"  {MARKS[state]} {job:<28} {state:<9}", style), f" attempt {attempt}  {duration:>8}  "
        )
        line.append(cut_middle(_one_line(detail), self.console.width - len(line)), style="dim")
        self.console.print(line, no_wrap=True, overflow="ellipsis")

    def _skipped_jobs(self, run_id: str, phase: str) -> None:
        """Skips (and jobs not run because one they wait for failed) are decisions in the run
        document, not statuses: read them when the phase ends."""
        run = self.store.read_run(run_id)
        for job in self.workflow.phase(phase).jobs:
            record = None if run is None else run.jobs.get(job.name)
            if record is not None and record.state in (JobState.SKIPPED, JobState.UPSTREAM_FAILED):
                self._job_line(job.name, record.state, 0, "")


class LiveLines:
    """Lines redrawn in place below the progress (a terminal only), at most ``REDRAWS`` times a
    second: the fan-outs in flight with their counts."""

    REDRAWS = 5

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live: Live | None = None
        self._drawn = 0.0

    def due(self) -> bool:
        return self.console.is_terminal and time.monotonic() - self._drawn >= 1 / self.REDRAWS

    def refresh(self, lines: list[str]) -> None:
        self._drawn = time.monotonic()
        if not lines:
            self.stop()
            return
        if self._live is None:
            self._live = Live(console=self.console, transient=True, auto_refresh=False)
            self._live.start()
        self._live.update(Text("\n".join(lines)), refresh=True)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def summary_table(report: RunReport, expand: bool = True) -> Table:
    """One row per job under a heading row per phase. Every column but the last keeps its full
    width and the output or error takes the rest of the terminal (``expand``), cut in the middle
    of the value when it is longer (a phase column would leave an 80-column terminal no room for
    it); not expanded, as for a file or a pipe, the table is as wide as its values, whole."""
    local = any(job.executions is not None for job in report.jobs)
    title = f"{report.workflow} run {report.run_id}: {report.status}"
    if report.seconds is not None:
        title += f" in {_duration(report.seconds)}"
    if report.deploy_id is not None:
        title += f" (deploy {report.deploy_id})"
    table = Table(
        title=escape(title),
        title_justify="left",
        title_style="bold",
        expand=expand,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
    )
    columns = {
        "job": max(len(JOB_INDENT + job.name) for job in report.jobs),
        # As wide as the usual states; wider only for a run that has an upstream_failed job.
        "status": max(len(JobState.SUCCEEDED), *(len(job.status) for job in report.jobs)),
        "attempts": len("attempts"),
        **({"runs": len("runs")} if local else {}),
        "time": len("999 ms"),
    }
    for column, width in columns.items():
        justify: JustifyMethod = "right" if column in NUMERIC_COLUMNS else "left"
        table.add_column(column, no_wrap=True, min_width=width, justify=justify)
    table.add_column(OUTPUT_COLUMN, no_wrap=True, min_width=len(OUTPUT_COLUMN), ratio=1)
    phase = None
    for job in report.jobs:
        if job.phase != phase:
            phase = job.phase
            table.add_row(Text(phase, style="bold blue"))
        style = STYLES[job.status]
        row: list[str | Preview] = [
            escape(JOB_INDENT + job.name),
            f"[{style}]{job.status}[/]",
            str(job.attempts),
        ]
        if local:
            row.append(str(job.executions))
        detail = Preview(job.error, style="red") if job.error else Preview(job.detail() or "")
        row += [_duration(job.seconds), detail]
        table.add_row(*row)
    return table


def print_summary(console: Console, report: RunReport) -> None:
    console.print(summary_table(report, expand=not uncut(console)))
    print_summary_notes(console, report)


def print_summary_notes(console: Console, report: RunReport) -> None:
    """What the table leaves out: the phase a running run is in, why it failed, the faults."""
    if report.parent is not None:
        parent = report.parent
        console.print(
            f"child run of {escape(str(parent['run_id']))} (workflow {escape(str(parent['workflow']))}, "
            f"job {escape(str(parent['job']))}, attempt {parent['attempt']})"
        )
    if report.status == RunState.RUNNING:
        console.print(f"current phase: {escape(report.phase)}")
    if report.status == RunState.QUEUED:
        console.print("queued: waiting for a slot of the workflow's concurrency limit")
    if report.error:
        console.print(f"[red]{escape(report.error.strip().splitlines()[0])}[/]")
    for job in report.jobs:
        print_failed_items(console, job)
    tolerated = [job.name for job in report.jobs if job.tolerated]
    if tolerated:
        console.print(f"[yellow]failed and tolerated (allow_failure): {escape(', '.join(tolerated))}[/]")
    caught = [job.name for job in report.jobs if job.caught]
    if caught:
        console.print(f"[yellow]failed and caught by a join after it: {escape(', '.join(caught))}[/]")
    if report.faults and any(report.faults.values()):
        counters = ", ".join(f"{name} {count}" for name, count in report.faults.items())
        console.print(f"faults: {counters}")


def print_failed_items(console: Console, job: JobReport) -> None:
    """A fan-out's items that failed for good, one line each (index, item, error), the first
    ``FAILED_ITEMS_SHOWN`` by index, and how many more there are."""
    if not job.failed_items or job.items is None:
        return
    console.print(f"[red]failed items of {escape(job.name)}:[/]")
    for failed in job.failed_items:
        error = _one_line(failed.error or "")
        item = _one_line(json.dumps(failed.item, default=str))
        console.print(f"  item {failed.index} {escape(item)}: {escape(error)}", soft_wrap=True)
    more = job.items["failed"] - len(job.failed_items)
    if more > 0:
        console.print(f"  and {more} more (history --json lists every attempt)")
