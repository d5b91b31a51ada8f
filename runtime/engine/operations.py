"""The operations people ask for, as the engine decides them: ``plan_cancel`` ends a running
run ``cancelled``, ``plan_redrive`` reopens a failed or cancelled one on its own definition
snapshot (``reopened``). Pure."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from runtime.documents.run import JobRecord, Run, StatusEvent, at_version, job_set, run_reopened
from runtime.engine import failure_handlers
from runtime.engine.progress import plan_progress, stop_run
from runtime.engine.transition import Expiry, Rejection, Transition, run_status
from runtime.statuses import CANCELLED, REDRIVABLE, JobState, RunState, StatusName


def plan_cancel(run: Run, event: StatusEvent, now: datetime) -> Transition | Rejection | None:
    """End the running run ``cancelled``. Attempts in flight are marked ``cancelled``, so their
    reports change nothing (they are recorded in ``statuses`` only) and a redrive gives those jobs
    new attempts. Guarded by the version read: a handler that dispatched a job meanwhile makes
    this decision again, and that job is cancelled too. None: this cancel ended the run before."""
    if event.attempt != run.redrives:
        return Rejection(
            action="ignored", reason=f"a cancel of round {event.attempt}; the run is in round {run.redrives}"
        )
    if run.state != RunState.RUNNING:
        if run.finished_by == event.key:
            return None
        return Rejection(action="ignored", reason=f"the run has already ended ({run.state})")
    if run.failure is not None and run.failure.caused_by == event.key:
        return None
    if run.exit is not None and run.exit.caused_by == event.key:
        return None
    error = f"cancelled: {event.reason}" if event.reason else "cancelled"
    return stop_run(run, event.key, CANCELLED, error, now, event.reason)


def reopened(run: Run) -> Run:
    """The run as a redrive leaves it before anything is dispatched: running again in its next
    round, on the same definition snapshot and in the phase it stopped in; jobs that succeeded or
    were skipped stay so, jobs that failed or were cancelled are pending with a fresh retry
    budget whose attempts go on from the last number used."""
    jobs = {
        name: JobRecord(state=JobState.PENDING, attempt=record.attempt, first_attempt=record.attempt + 1)
        if failure_handlers.runs_again(run.definition.job(name), record)
        else record
        for name, record in run.jobs.items()
    }
    return replace(
        run,
        phase=run.failure.phase
        if run.failure is not None
        else run.exit.phase
        if run.exit is not None
        else run.phase,
        failure=None,
        exit=None,
        state=RunState.RUNNING,
        redrives=run.redrives + 1,
        error=None,
        finished_by=None,
        expire_at=None,
        jobs=jobs,
    )


def plan_redrive(run: Run, event: StatusEvent, now: datetime) -> Transition | Rejection | None:
    """Reopen a failed or cancelled run (``reopened``) and dispatch the jobs that are ready in it,
    in one write guarded by the version read. A redrive carries the round it opens, so a request
    repeated or delivered late changes nothing. None: this redrive was applied before."""
    if event.attempt == run.redrives and run.redrives > 0:
        return None
    if event.attempt != run.redrives + 1:
        return Rejection(
            action="ignored",
            reason=f"a redrive to round {event.attempt}; the run is in round {run.redrives}",
        )
    if run.state not in REDRIVABLE:
        return Rejection(
            action="ignored", reason=f"the run is {run.state}: only a failed or cancelled run is redriven"
        )
    again = reopened(run)
    changes = run_reopened(again.redrives, again.phase)
    for name, record in again.jobs.items():
        if record is not run.jobs[name]:
            changes |= job_set(name, record)
    statuses: tuple[StatusEvent, ...] = (run_status(again, StatusName.WORKFLOW_REDRIVEN),)
    progress = plan_progress(again, event.key, now)
    if progress is not None:
        changes |= progress.changes
        statuses += progress.statuses
    return Transition(
        conditions=at_version(run.version),
        changes=changes,
        dispatches=() if progress is None else progress.dispatches,
        fan_outs=() if progress is None else progress.fan_outs,
        statuses=statuses,
        expiry=(progress.expiry if progress is not None else None)
        or (Expiry(None) if run.expire_at is not None else None),
        wake_at=None if progress is None else progress.wake_at,
    )
