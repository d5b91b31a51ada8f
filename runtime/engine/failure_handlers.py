"""The failure handlers (a spec's ``on_failure`` jobs), as the engine runs them.

When a job's last attempt fails without ``allow_failure`` (or the run is cancelled) and the
definition has handlers, the run does not end: it records a ``Failure`` and enters the handlers'
phase (``HANDLERS_PHASE``), whose jobs start like any phase's. Once all of them have finished, the
run ends ``failed`` (or ``cancelled``) with the failure's error. Meanwhile no job of the workflow
gets another attempt: a report of one still in flight is recorded (a success with its output) and
changes nothing else; a ``for_each`` job starts no item and retries none, and ends once its items
in flight have reported (``runtime.engine.fanout``). A handler that fails is recorded, and the
handlers after it are skipped by the join rules; it never starts the handlers again. A redrive
clears the failure, so a run that fails again runs them again.

Pure: the engine calls these while it plans.
"""

from __future__ import annotations

from dataclasses import replace

from runtime.definition.model import EXIT_PHASE, HANDLERS_PHASE, Job
from runtime.documents.failures import Failure
from runtime.documents.run import JobRecord, Run
from runtime.engine.joins import catchable, failure_allowed
from runtime.statuses import CANCELLED, FailureReason, JobState, RunState

STOPPED_BY_CANCEL = frozenset({JobState.DISPATCHED, JobState.WAITING})
"""Job states a cancel (or the run's deadline) ends: in flight, or waiting for a timer."""


def has_handlers(run: Run) -> bool:
    """A failure now starts the handlers (the definition has some, and they have not started)."""
    return run.definition.on_failure is not None and run.failure is None and run.exit is None


def has_exit_handlers(run: Run) -> bool:
    """The run's end now starts its exit handlers (the definition has some, and they have not
    started)."""
    return run.definition.on_exit is not None and run.exit is None


def exit_end(run: Run, status: RunState, error: str | None) -> tuple[RunState, str | None]:
    """How the run ends once its exit handlers have all finished: as it was going to (``status``,
    ``error``), unless it was going to succeed and an exit handler with ``fails_run`` failed."""
    if status != RunState.SUCCEEDED or run.definition.on_exit is None:
        return status, error
    for job in run.definition.on_exit.jobs:
        record = run.jobs.get(job.name)
        if job.fails_run and record is not None and record.state == JobState.FAILED:
            return RunState.FAILED, f"exit handler {job.name!r} failed (it has fails_run): {record.error}"
    return status, error


def tolerated(run: Run, job: Job, retry_left: bool, error: str) -> bool:
    """A failed attempt of ``job`` is recorded and the run goes on, without another attempt: a job
    of the workflow while the handlers run, or the last attempt of a job that ``allow_failure``
    (or of a handler), or of one whose failure a job after it may catch (whether one does is
    decided as the run goes on: ``joins.uncaught``). A job that allows failures of some types only
    (``allow_failure: [types]``) fails the run with any other, whatever the jobs after it."""
    if run.exit is not None:
        # The run has ended but for its exit handlers: a late report of any other job is
        # recorded; an exit handler's own failure is, after its retries.
        return job.phase != EXIT_PHASE or not retry_left
    if run.failure is not None and job.phase != HANDLERS_PHASE:
        return True
    if retry_left:
        return False
    if run.failure is not None or failure_allowed(job, error):
        return True
    return not isinstance(job.allow_failure, tuple) and catchable(run.definition, job.name)


def with_job_failed(run: Run, job: str, error: str) -> Run:
    failed = replace(run.jobs[job], state=JobState.FAILED, error=error)
    return replace(run, jobs={**run.jobs, job: failed})


def with_jobs_cancelled(run: Run) -> Run:
    """The run as a cancel leaves its jobs: the attempts in flight and the jobs waiting for a
    timer are cancelled."""
    jobs = {
        name: replace(record, state=JobState.CANCELLED) if record.state in STOPPED_BY_CANCEL else record
        for name, record in run.jobs.items()
    }
    return replace(run, jobs=jobs)


def failing(run: Run, failure: Failure) -> Run:
    """The run in the handlers' phase because of ``failure`` (its job failed)."""
    failed = run if failure.job is None else with_job_failed(run, failure.job, failure.error)
    return replace(failed, phase=HANDLERS_PHASE, failure=failure)


def end_state(reason: FailureReason) -> RunState:
    """How a run ends for ``reason``, once its handlers (if any) have finished."""
    return RunState.CANCELLED if reason == CANCELLED else RunState.FAILED


def runs_again(job: Job, record: JobRecord) -> bool:
    """A redrive gives ``job`` new attempts: every handler (they run once per failure), and a job
    that failed (without ``allow_failure``: a tolerated failure stays as it is), was cancelled,
    was left waiting for a timer when the run ended, or did not run because one it waits for
    failed (its join decides again)."""
    if job.phase in (HANDLERS_PHASE, EXIT_PHASE):
        return record.state != JobState.PENDING
    if record.state in (JobState.CANCELLED, JobState.WAITING, JobState.UPSTREAM_FAILED):
        return True
    return record.state == JobState.FAILED and not failure_allowed(job, record.error)
