"""A run read back from MongoDB: what ``run`` ends with, what ``status`` shows (the table and
``--json``), what ``runtime.client.Client.get`` answers and the starter's ``get`` sends: one shape
for all, ``RunReport.to_json`` and back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runtime.documents.children import child_run_id
from runtime.documents.items import FAILED_ITEMS_SHOWN, FailedItem, FanOut
from runtime.documents.run import JobRecord
from runtime.engine.joins import caught, failure_allowed
from runtime.service.callbacks import complete_command, token_of
from runtime.service.job_limits import job_waits
from runtime.statuses import ENDED, JobState, RunState, StatusName
from runtime.store.mongo import MongoStore

JOB_RUNNING = "running"
"""What the report calls a dispatched job while its run goes on; every other job is reported by
its state."""

IN_FLIGHT = (JOB_RUNNING, JobState.WAITING.value)
"""What a job is while its run goes on; once the run has ended, such a job never ran to an end."""


@dataclass(frozen=True, kw_only=True)
class JobReport:
    name: str
    phase: str
    status: str
    """``succeeded``, ``failed``, ``skipped``, ``pending``, or ``running`` while the run is."""
    attempts: int
    """The job's attempt count in the run document."""
    executions: int | None
    """How many times the runner entered the user's handler (None: not run by this process)."""
    output: Any
    """The output of the attempt that succeeded (None for a job that did not)."""
    error: str | None
    """Why the job failed, for a failed job only: the errors of attempts that were retried are in
    the run's history (its statuses), not here."""
    seconds: float | None
    """From the job's first ``started`` to its last report, in the run's current round: a
    redriven run's job counts only the attempts since the redrive."""
    tolerated: bool = False
    """It failed and the run went on (``allow_failure``)."""
    caught: bool = False
    """It failed and a job after it whose join runs after a failure ran (or its ``when`` said
    no): the failure was caught, so it did not fail the run."""
    items: Mapping[str, int] | None = None
    """A ``for_each`` job's items: ``count``, ``done``, ``failed``, ``running``, ``waiting`` (to
    be retried), ``not_started``."""
    failed_items: tuple[FailedItem, ...] = ()
    """A ``for_each`` job's items that failed for good (the first ``FAILED_ITEMS_SHOWN`` by index),
    each with its error."""
    output_ref: str | None = None
    """Where the output is kept when it is too large for an event, or a fan-out's."""
    before_redrive: str | None = None
    """For a job pending again after a redrive (a failure handler, a job that failed), how its
    last attempt before the redrive ended: ``succeeded (attempt 1)``."""
    callback_token: str | None = None
    """For a callback job without code that waits: its attempt's token, to hand to whoever
    completes it (``complete TOKEN``); shown to operators only (they hold the key it is made with)."""
    child: str | None = None
    """A child workflow job's: the run id of its last attempt's child run."""
    waits: str | None = None
    """Why its attempt (or items) waits for the job's limits across runs: ``rate limit 20/s on
    charge_card (980 waiting)``."""

    def detail(self) -> Any:
        """What the summary's output column shows: a fan-out's counts rather than its items'
        outputs, the reference of an output kept by reference, what a job pending again after a
        redrive did before it."""
        if self.callback_token is not None and self.status == JobState.WAITING:
            return f"waits for its callback: {complete_command(self.callback_token)}"
        if self.before_redrive is not None and self.status == JobState.PENDING:
            return f"ran before the redrive: {self.before_redrive}"
        if self.waits is not None:
            return f"waits: {self.waits}"
        if self.items is not None and self.error is None:
            items = self.items
            return (
                f"{items['done']}/{items['count']} done, {items['failed']} failed, {items['running']} running"
            )
        if self.output_ref is not None and self.output is None:
            return f"(kept by reference: {self.output_ref})"
        if self.child is not None and self.status != JobState.SUCCEEDED:
            return f"child run {self.child}"
        return self.output


@dataclass(frozen=True, kw_only=True)
class RunReport:
    run_id: str
    workflow: str
    status: str
    """``succeeded`` or ``failed``; ``running`` only for a run still going on."""
    phase: str
    jobs: tuple[JobReport, ...]
    error: str | None
    """Why the run failed (or why the runner stopped following it)."""
    seconds: float | None
    faults: Mapping[str, int] | None = None
    """Fault counters of a local run (None when the run was not made by this process)."""
    deploy_id: str | None = None
    """The deploy whose versions the run invokes (None: a run without a version map)."""
    parent: Mapping[str, Any] | None = None
    """A child run's parent attempt: ``{run_id, workflow, job, attempt}``."""

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object: with the run's ``error`` and each job's, so a caller (CI) can say
        why a run failed from this object alone."""
        document: dict[str, Any] = {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "phase": self.phase,
            "seconds": self.seconds,
            "deploy_id": self.deploy_id,
            "error": self.error,
            "jobs": {
                job.name: {
                    "phase": job.phase,
                    "status": job.status,
                    "seconds": job.seconds,
                    "attempts": job.attempts,
                    "executions": job.executions,
                    "output": job.output,
                    "error": job.error,
                    "tolerated": job.tolerated,
                    "caught": job.caught,
                    **({} if job.items is None else {"items": dict(job.items)}),
                    **(
                        {"failed_items": [item.to_json() for item in job.failed_items]}
                        if job.items is not None
                        else {}
                    ),
                    **({} if job.output_ref is None else {"output_ref": job.output_ref}),
                    **({} if job.callback_token is None else {"callback_token": job.callback_token}),
                    **({} if job.child is None else {"child": job.child}),
                    **({} if job.waits is None else {"waits": job.waits}),
                }
                for job in self.jobs
            },
            "tolerated": [job.name for job in self.jobs if job.tolerated],
            "caught": [job.name for job in self.jobs if job.caught],
        }
        if self.faults is not None:
            document["faults"] = dict(self.faults)
        if self.parent is not None:
            document["parent"] = dict(self.parent)
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> RunReport:
        """``to_json``'s object back (what a client reads from the starter function)."""
        return cls(
            run_id=document["run_id"],
            workflow=document["workflow"],
            status=document["status"],
            phase=document.get("phase", ""),
            seconds=document.get("seconds"),
            deploy_id=document.get("deploy_id"),
            error=document.get("error"),
            faults=document.get("faults"),
            parent=document.get("parent"),
            jobs=tuple(
                JobReport(
                    name=name,
                    phase=job.get("phase", ""),
                    status=job["status"],
                    attempts=job["attempts"],
                    executions=job.get("executions"),
                    output=job.get("output"),
                    error=job.get("error"),
                    seconds=job.get("seconds"),
                    tolerated=job.get("tolerated", False),
                    caught=job.get("caught", False),
                    items=job.get("items"),
                    failed_items=tuple(FailedItem.from_json(item) for item in job.get("failed_items", ())),
                    output_ref=job.get("output_ref"),
                    callback_token=job.get("callback_token"),
                    child=job.get("child"),
                    waits=job.get("waits"),
                )
                for name, job in document["jobs"].items()
            ),
        )

    def job(self, name: str) -> JobReport:
        """The job called ``name``; ``KeyError`` naming the jobs there are otherwise."""
        for job in self.jobs:
            if job.name == name:
                return job
        names = ", ".join(job.name for job in self.jobs)
        raise KeyError(f"run {self.run_id} has no job {name!r} (its jobs: {names})")


def _items(fan_out: FanOut) -> dict[str, int]:
    return {
        "count": fan_out.count,
        "done": fan_out.done,
        "failed": fan_out.failed,
        "running": fan_out.running,
        "waiting": fan_out.waiting,
        "not_started": fan_out.not_started,
    }


def _failed_items(store: MongoStore, run_id: str, job: str, fan_out: FanOut | None) -> tuple[FailedItem, ...]:
    if fan_out is None or not fan_out.failed:
        return ()
    return tuple(store.items().failed_items(run_id, job, FAILED_ITEMS_SHOWN))


ENDED_AS = {StatusName.SUCCESS: JobState.SUCCEEDED.value, StatusName.FAILED: JobState.FAILED.value}


def _round_start(record: JobRecord | None) -> int:
    """The job's first attempt in the run's current round (a redrive starts a new one)."""
    return 1 if record is None or record.first_attempt is None else record.first_attempt


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else (end - start).total_seconds()


def summarize(
    store: MongoStore,
    run_id: str,
    executions: Mapping[str, int] | None = None,
    faults: Mapping[str, int] | None = None,
    gave_up: str | None = None,
) -> RunReport | None:
    """The report of run ``run_id``, or None when there is no such run. ``gave_up`` is why the
    runner stopped following a run that had not finished: the run then reports as failed and
    its unfinished jobs as pending."""
    run = store.read_run(run_id)
    if run is None:
        return None
    first_started: dict[str, datetime] = {}
    last_report: dict[str, datetime] = {}
    before_redrive: dict[str, str] = {}
    started_by: dict[tuple[str, int], str] = {}
    run_started = run_ended = None
    for report in store.read_statuses(run_id):
        job, date = report.job, report.date
        if job is not None and report.index is None and report.attempt < _round_start(run.jobs.get(job)):
            # An attempt of an earlier round: what the job did before the redrive, not now.
            if report.status in ENDED_AS:
                before_redrive[job] = f"{ENDED_AS[report.status]} (attempt {report.attempt})"
            continue
        if job is None:
            if report.status == StatusName.WORKFLOW_STARTED:
                run_started = date
            elif report.status in (
                StatusName.WORKFLOW_SUCCEEDED,
                StatusName.WORKFLOW_FAILED,
                StatusName.WORKFLOW_CANCELLED,
            ):
                run_ended = date
            continue
        if date is None:
            continue
        if report.status == StatusName.STARTED:
            first_started.setdefault(job, date)
            if report.request_id is not None:
                started_by[(job, report.attempt)] = report.request_id
        else:
            last_report[job] = date
    ended = run.state in ENDED or gave_up is not None
    waits = job_waits(store, run)
    jobs = []
    states = {name: record.state for name, record in run.jobs.items()}
    for phase in run.definition.all_phases():
        for job_definition in phase.jobs:
            name = job_definition.name
            record = run.jobs[name]
            job_status = JOB_RUNNING if record.state == JobState.DISPATCHED else record.state.value
            jobs.append(
                JobReport(
                    name=name,
                    phase=phase.name,
                    status=JobState.PENDING if ended and job_status in IN_FLIGHT else job_status,
                    attempts=record.attempt,
                    executions=None if executions is None else executions.get(name, 0),
                    output=record.output,
                    # The engine keeps the last failure on the record when it retries; once
                    # the job has succeeded that error is history, not its outcome.
                    error=record.error if record.state == JobState.FAILED else None,
                    seconds=_seconds(first_started.get(name), last_report.get(name)),
                    tolerated=record.state == JobState.FAILED
                    and failure_allowed(job_definition, record.error),
                    caught=record.state == JobState.FAILED
                    and not failure_allowed(job_definition, record.error)
                    and caught(run.definition, name, states) is True,
                    items=None if record.fan_out is None else _items(record.fan_out),
                    failed_items=_failed_items(store, run_id, name, record.fan_out),
                    output_ref=record.output_ref,
                    before_redrive=before_redrive.get(name),
                    callback_token=token_of(store, run, job_definition),
                    child=None
                    if job_definition.child_workflow is None or record.attempt == 0
                    else started_by.get((name, record.attempt), child_run_id(run_id, name, record.attempt)),
                    waits=waits.get(name),
                )
            )
    return RunReport(
        run_id=run_id,
        workflow=run.workflow,
        status=RunState.FAILED if gave_up is not None else run.state,
        phase=run.phase,
        jobs=tuple(jobs),
        error=gave_up or run.error,
        seconds=_seconds(run_started, run_ended),
        faults=faults,
        deploy_id=None if run.deployment is None else run.deployment.deploy_id,
        parent=None
        if run.parent is None
        else {
            "run_id": run.parent.run_id,
            "workflow": run.parent.workflow,
            "job": run.parent.job,
            "attempt": run.parent.attempt,
        },
    )
