"""Callback jobs, decided: an attempt completed from outside through its token
(``callback_completed``: an output, or an error), kept waiting by a heartbeat
(``callback_heartbeat``), or timed out. A job with code waits once its code has returned (its
``success`` starts the wait; what the code returned is not the output), one without waits from
its start (``runtime.engine.joins.waits_until``).

Once per attempt: the completion is the attempt's ``callback_completed`` status, one per attempt
by the unique key of ``statuses``, applied only while its attempt is the job's current one and
not yet ended; a heartbeat moves the attempt's timer to its own recorded time plus ``timeout``,
never back, so applying it again changes nothing. A timer that fires for a due time a heartbeat
has since moved on is its own status (its due time in ``slot``) and is ignored.

Pure, like the rest of the engine.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from runtime import limits
from runtime.definition.model import Job
from runtime.documents.run import (
    JobRecord,
    Run,
    StatusEvent,
    at_version,
    job_changed,
    job_is,
    no_failure_since,
    run_is,
)
from runtime.engine import failure_handlers, retry
from runtime.engine.joins import callback_awaited, job_event
from runtime.engine.progress import fail_run, past_max_duration, tolerate_failure
from runtime.engine.transition import Rejection, Transition
from runtime.statuses import JobState, RunState, StatusName

CALLBACK_TIMED_OUT = "callback timed out"


def awaits_callback(job: Job, record: JobRecord) -> bool:
    """Whether the job's current attempt waits for its token's completion (a job with code that
    waits may instead wait for a retry's delay, then its ``caused_by`` is no success of its own)."""
    if job.callback is None or record.state != JobState.WAITING:
        return False
    if not job.callback.runs_code:
        return True
    returned = StatusEvent(
        run_id="", workflow="", status=StatusName.SUCCESS, job=job.name, attempt=record.attempt
    )
    return record.caused_by == returned.key


def accepts_completion(job: Job, record: JobRecord, attempt: int) -> bool:
    """Whether a completion of ``attempt`` is taken now: the attempt waits for it, or its code
    still runs (an outside system may answer before the code has returned)."""
    if job.callback is None or record.attempt != attempt:
        return False
    running = job.callback.runs_code and record.state == JobState.DISPATCHED
    return running or awaits_callback(job, record)


def timer_slot(due: datetime) -> str:
    """The ``slot`` of a callback's ``timer_fired``: its due time, so a timer for a due time a
    heartbeat moved on does not take the place of the one for the new due time."""
    return due.isoformat()


def plan_code_returned(run: Run, job: Job, event: StatusEvent, now: datetime) -> Transition | Rejection:
    """The code of a callback job returned (``success``): its attempt now waits ``timeout`` for
    its token's completion; what the code returned is not the job's output."""
    assert job.callback is not None
    record = run.jobs[job.name]
    if run.state != RunState.RUNNING:
        return Rejection(action="ignored", reason=f"the run has ended ({run.state})")
    if (record.state, record.attempt) != (JobState.DISPATCHED, event.attempt):
        return Rejection(
            action="ignored",
            reason=f"{event.key} is stale or applied: {job.name!r} is {record.state} at {record.attempt}",
        )
    due = now + timedelta(seconds=job.callback.timeout)
    return Transition(
        conditions=run_is(RunState.RUNNING) | job_is(job.name, JobState.DISPATCHED, event.attempt),
        changes=job_changed(job.name, state=JobState.WAITING, due_at=due, caused_by=event.key),
        wake_at=due,
    )


def plan_heartbeat(run: Run, event: StatusEvent, now: datetime) -> Transition | Rejection:
    """A heartbeat of a waiting attempt: it waits until ``timeout`` seconds after the heartbeat
    was recorded, unless it already waits longer. Guarded by the version read."""
    assert event.job is not None
    job = run.definition.job(event.job)
    record = run.jobs[job.name]
    if job.callback is None:
        return Rejection(action="ignored", reason=f"job {job.name!r} is not a callback job")
    if run.state != RunState.RUNNING or record.attempt != event.attempt or not awaits_callback(job, record):
        return Rejection(
            action="ignored",
            reason=f"{event.key} finds no wait: {job.name!r} is {record.state} at {record.attempt}",
        )
    due = heartbeat_due(job, event, now)
    if record.due_at is not None and due <= record.due_at:
        return Rejection(
            action="ignored", reason=f"the wait of {job.name!r} already lasts until {record.due_at}"
        )
    return Transition(
        conditions=at_version(run.version), changes=job_changed(job.name, due_at=due), wake_at=due
    )


def heartbeat_due(job: Job, event: StatusEvent, now: datetime) -> datetime:
    """When the attempt's wait ends after this heartbeat: counted from when it was recorded."""
    assert job.callback is not None
    return (event.date or now) + timedelta(seconds=job.callback.timeout)


def callback_failed(run: Run, job: Job, event: StatusEvent, error: str, now: datetime) -> Transition:
    """The attempt failed (its token completed with an error, or no completion in time): like any
    failed attempt it gets another while the job's retries, ``on`` and ``max_duration`` allow (with
    code: run again, after the retry's delay; without: waiting at once, for ``timeout`` again),
    with a token of its own; else the job fails, and the run with it unless the job may fail."""
    assert job.callback is not None
    record = run.jobs[job.name]
    error = limits.bounded(error)
    conditions = run_is(RunState.RUNNING) | job_is(job.name, record.state, event.attempt)
    attempts = event.attempt - (record.first_attempt or 1) + 1
    retried = attempts <= job.retries and retry.is_retried(job.retry, error)
    delay = 0.0
    if job.callback.runs_code:
        rng = retry.jitter_source(run.run_id, job.name, event.attempt)
        delay = retry.retry_delay(job.retry, attempts, rng)
    if retried and past_max_duration(job, record, now + timedelta(seconds=delay)):
        retried = False
    if failure_handlers.tolerated(run, job, retry_left=retried, error=error):
        return tolerate_failure(run, event, conditions, error, now)
    if not retried:
        message = f"job {job.name!r} failed after {attempts} attempt(s): {error}"
        return fail_run(run, event.key, conditions, job.name, message, now, event.attempt)
    nxt = event.attempt + 1
    retry_changes = job_changed(job.name, attempt=nxt, caused_by=event.key, claimed_at=now, error=error)
    guarded = conditions | no_failure_since(run.failure)
    if not job.callback.runs_code or delay > 0:
        seconds = delay if job.callback.runs_code else job.callback.timeout
        due = now + timedelta(seconds=seconds)
        changes = retry_changes | job_changed(job.name, state=JobState.WAITING, due_at=due)
        awaited = () if job.callback.runs_code else (callback_awaited(run, job, nxt),)
        return Transition(conditions=guarded, changes=changes, wake_at=due, statuses=awaited)
    changes = retry_changes | job_changed(job.name, state=JobState.DISPATCHED)
    return Transition(conditions=guarded, changes=changes, dispatches=(job_event(run, job, nxt),))


def completion_error(event: StatusEvent) -> str | None:
    """The error a completion fails its attempt with; None when it succeeds it."""
    if event.error is None:
        return None
    return f"callback failed: {event.error}"
