"""The decisions about one job attempt that the job wrapper and the orchestrator's on-failure
path make: whether an attempt may run, whether Lambda giving up on an invocation counts as the
attempt's failure, and what an attempt the wrapper did not run (``not_run``) leaves the job to do.
Pure, like the rest of the engine."""

from __future__ import annotations

from datetime import datetime

from runtime import limits
from runtime.documents.events import FailureRecord, JobEvent
from runtime.documents.leases import Lease
from runtime.documents.run import JobRecord, Run, StatusEvent, at_version, job_changed
from runtime.engine.joins import job_event
from runtime.engine.transition import Rejection, Transition
from runtime.statuses import JobState, RunState, StatusName


def attempt_failed(job: JobEvent, error: str) -> StatusEvent:
    """The ``failed`` report of one job attempt."""
    return StatusEvent(
        run_id=job.run_id,
        workflow=job.workflow,
        status=StatusName.FAILED,
        phase=job.phase,
        job=job.job,
        attempt=job.attempt,
        error=limits.bounded(error),
        index=job.index,
    )


def plan_give_up(
    record: FailureRecord, terminal: StatusEvent | None, lease: Lease | None, now: datetime
) -> StatusEvent | Rejection:
    """Lambda gave up on a job invocation: count it as the attempt's failure, unless the attempt
    reported its end (``terminal``) or another invocation holds a live ``lease`` on it (that one
    reports its own end, or Lambda gives up on it in turn). The failure is recorded through the
    attempt's one terminal report, so it can never stand beside a success."""
    if terminal is not None:
        return Rejection(action="ignored", reason="the attempt already reported its end")
    if lease is not None and lease.owner != record.request_id and lease.expires_at > now:
        return Rejection(action="ignored", reason="another invocation holds a live lease on the attempt")
    return attempt_failed(record.job_event, record.error)


def attempt_blocked(job: JobEvent, state: tuple[RunState, JobRecord | None] | None) -> str | None:
    """Why the job wrapper must not run ``job``'s code (None: it may): the run has ended, or the
    run is at another attempt of the job. ``state`` is the run's state and the job's record; a
    job event of a run that has no document (a job invoked by hand) runs."""
    if state is None:
        return None
    run_state, record = state
    if run_state != RunState.RUNNING:
        return f"the run had ended ({run_state}) before attempt {job.attempt} of {job.job!r} started"
    if job.index is not None:
        return _item_blocked(job, record)
    if record is None or record.state != JobState.DISPATCHED or record.attempt != job.attempt:
        where = "not in the run" if record is None else f"{record.state} at attempt {record.attempt}"
        return f"attempt {job.attempt} of {job.job!r} is stale: the job is {where}"
    return None


def _item_blocked(job: JobEvent, record: JobRecord | None) -> str | None:
    """An item's attempt runs while its job fans out and the item's lane holds that attempt."""
    assert job.index is not None
    fan_out = None if record is None else record.fan_out
    in_flight = record is not None and record.state == JobState.DISPATCHED
    if in_flight and fan_out is not None and fan_out.holds(job.index, job.attempt):
        return None
    return f"attempt {job.attempt} of item {job.index} of {job.job!r} is stale: its job has moved on"


def plan_not_run(run: Run, event: StatusEvent, now: datetime) -> Transition | Rejection | None:
    """The job wrapper refused the attempt (``not_run``): it read the run as ended, and that
    attempt number is spent (its one terminal report is the refusal). While the job is still
    dispatched at that attempt, a running run (redriven since) dispatches the next attempt at once,
    without using the job's retry budget; an ended run records the job ``cancelled``, so a redrive
    gives it a new attempt. For a fan-out's item (in an ended run) the fan-out is the job: a redrive
    starts its unfinished items again. None: applied before."""
    assert event.job is not None
    record = run.jobs[event.job]
    if record.state == JobState.CANCELLED and record.caused_by == event.key:
        return None
    if event.index is not None:
        in_flight = record.fan_out is not None and record.fan_out.holds(event.index, event.attempt)
    else:
        in_flight = record.attempt == event.attempt
    if record.state != JobState.DISPATCHED or not in_flight:
        return Rejection(action="ignored", reason=f"{event.key} is stale: the job has moved on")
    conditions = at_version(run.version)
    if run.state != RunState.RUNNING:
        changes = job_changed(event.job, state=JobState.CANCELLED, caused_by=event.key)
        return Transition(conditions=conditions, changes=changes)
    if event.index is not None:
        return Rejection(action="ignored", reason="an item's not_run in a running run is its fan-out's")
    job = run.definition.job(event.job)
    attempt = event.attempt + 1
    first = (record.first_attempt or 1) + 1
    return Transition(
        conditions=conditions,
        changes=job_changed(
            event.job, attempt=attempt, first_attempt=first, caused_by=event.key, claimed_at=now
        ),
        dispatches=(job_event(run, job, attempt),),
    )
