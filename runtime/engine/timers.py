"""Time, as events: the decisions on a timer firing and on a person's answer (the sweep that
fires due timers is ``runtime.service.timers``).

A timer is a due time the decision that creates it records in the run document: a waiting job's
``dueAt`` (a retry's delay, a wait job, an approval's timeout), a fan-out lane's ``dueAt`` (an
item's retry delay: its ``timer_fired`` names the item, and ``runtime.service.fan_out`` applies
it) or the run's ``deadline``. That
decision also lowers the run's ``wakeAt`` (``$min``), the one indexed field the sweep reads.
When a timer is due the sweep inserts ``timer_fired`` into ``statuses``, keyed by the timer (the
job and its attempt, or the run's round for the deadline), and the orchestrator applies it like
any other event. So a timer that fires twice is one status (the unique index), a redelivery of
one that was applied writes nothing (the replay repeats what it dispatched), and one that fires
late, or after the job was answered or the run ended, finds nothing waiting and changes nothing.
An approval's answer (``approved`` / ``rejected``) is a status of the waiting attempt too, and
whichever of the answer and the timeout is applied first wins. The deadline counts until the
failure handlers start: then it is no timer of the run's any more (they run to their own end),
and a ``timer_fired`` of it recorded before changes nothing.

Pure, like the rest of the engine.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from runtime.definition.model import Job
from runtime.documents.run import (
    Run,
    StatusEvent,
    at_version,
    deadline_set,
    in_round,
    job_changed,
    job_is,
    no_failure_since,
    run_is,
)
from runtime.engine import failure_handlers, retry
from runtime.engine.callbacks import (
    CALLBACK_TIMED_OUT,
    accepts_completion,
    awaits_callback,
    callback_failed,
    completion_error,
    timer_slot,
)
from runtime.engine.event_jobs import EVENT_TIMED_OUT, event_awaited, matches
from runtime.engine.joins import WAITED_UNTIL, job_event
from runtime.engine.progress import (
    fail_run,
    past_max_duration,
    plan_progress,
    record_success,
    stop_run,
    tolerate_failure,
)
from runtime.engine.transition import Rejection, Transition
from runtime.statuses import FAILED, JobState, RunState, StatusName

RUN_DEADLINE_EXCEEDED = "run deadline exceeded"
APPROVAL_TIMED_OUT = "approval timed out"


# Field paths and queries of the run document that only timers use (names from documents).


def timer_event(run: Run, job: Job | None) -> StatusEvent:
    """The ``timer_fired`` status of the job's current attempt, or of the run's deadline in its
    current round (``job`` None)."""
    if job is None:
        return StatusEvent(
            run_id=run.run_id, workflow=run.workflow, status=StatusName.TIMER_FIRED, attempt=run.redrives
        )
    return StatusEvent(
        run_id=run.run_id,
        workflow=run.workflow,
        status=StatusName.TIMER_FIRED,
        phase=job.phase,
        job=job.name,
        attempt=run.jobs[job.name].attempt,
    )


def pending_timers(run: Run) -> list[tuple[datetime, StatusEvent]]:
    """Every timer of the running run with its due time: waiting jobs', and the deadline until
    the failure handlers start (they run to their own end, so it no longer does anything)."""
    if run.state != RunState.RUNNING:
        return []
    timers = [
        (
            record.due_at,
            replace(timer_event(run, job), slot=timer_slot(record.due_at))
            if awaits_callback(job, record)
            else timer_event(run, job),
        )
        for job in run.definition.jobs()
        if (record := run.jobs[job.name]).state == JobState.WAITING and record.due_at is not None
    ]
    timers += [
        (lane.due_at, replace(timer_event(run, job), index=lane.index, attempt=lane.attempt))
        for job in run.definition.jobs()
        if (record := run.jobs[job.name]).state == JobState.DISPATCHED and record.fan_out is not None
        for lane in record.fan_out.lanes.values()
        if lane.waiting and lane.due_at is not None
    ]
    if run.deadline is not None and run.failure is None and run.exit is None:
        timers.append((run.deadline, timer_event(run, None)))
    return sorted(timers, key=lambda timer: timer[0])


def with_deadline(
    run: Run, decision: Transition | Rejection | None, now: datetime, *, fresh: bool = False
) -> Transition | Rejection | None:
    """``decision`` (the start of ``run``, or with ``fresh`` the redrive into its current round)
    with the round's deadline set, when the definition has a ``timeout``: a start sets it once
    (a redelivered start leaves it), a redrive starts the clock again."""
    timeout = run.definition.timeout
    if timeout is None or isinstance(decision, Rejection) or (run.deadline is not None and not fresh):
        return decision
    if decision is None:
        if run.state != RunState.RUNNING:
            return None
        decision = Transition(conditions=run_is(RunState.RUNNING) | in_round(run.redrives), changes={})
    due = now + timedelta(seconds=timeout)
    earliest = due if decision.wake_at is None else min(due, decision.wake_at)
    return replace(decision, changes=decision.changes | deadline_set(due), wake_at=earliest)


def plan_timer(run: Run, event: StatusEvent, now: datetime) -> Transition | Rejection | None:
    """A timer came due: the deadline fails the run (or, once the failure handlers run, does
    nothing); a waiting job's timer completes a wait job, fails an approval nobody answered,
    ends an event job's wait that no event ended, or dispatches the attempt a retry delayed."""
    if event.job is None:
        return _plan_deadline(run, event, now)
    job = run.definition.job(event.job)
    waiting = _waiting(run, job, event, now)
    if not isinstance(waiting, bool):
        return waiting
    if job.wait is not None:
        return _complete(run, job, event, {"waited": job.wait}, now)
    if job.wait_until is not None and (due := run.jobs[job.name].due_at) is not None:
        return _complete(run, job, event, {WAITED_UNTIL: due.isoformat()}, now)
    if job.approval is not None:
        return _fail(run, job, event, APPROVAL_TIMED_OUT, now)
    if job.event is not None:
        return _event_timed_out(run, job, event, now)
    record = run.jobs[job.name]
    if awaits_callback(job, record):
        if record.due_at is not None and event.slot != timer_slot(record.due_at):
            return Rejection(
                action="ignored", reason=f"a heartbeat made {job.name!r} wait until {record.due_at}"
            )
        return callback_failed(run, job, event, CALLBACK_TIMED_OUT, now)
    conditions = run_is(RunState.RUNNING) | job_is(job.name, JobState.WAITING, event.attempt)
    if failure_handlers.tolerated(run, job, retry_left=True, error=record.error or ""):
        # The failure handlers started while this job waited to retry: it gets no other attempt.
        return tolerate_failure(run, event, conditions, record.error or "the job failed", now)
    return Transition(
        conditions=conditions | no_failure_since(run.failure),
        changes=job_changed(job.name, state=JobState.DISPATCHED, caused_by=event.key, claimed_at=now),
        dispatches=(job_event(run, job, record.attempt),),
    )


def plan_answer(run: Run, event: StatusEvent, now: datetime) -> Transition | Rejection | None:
    """A person approved (the job succeeds with the answer's output) or rejected (it fails with
    the reason) the approval job's waiting attempt."""
    assert event.job is not None
    job = run.definition.job(event.job)
    if job.approval is None:
        return Rejection(action="ignored", reason=f"job {job.name!r} is not an approval job")
    waiting = _waiting(run, job, event, now)
    if not isinstance(waiting, bool):
        return waiting
    if event.status == StatusName.APPROVED:
        return _complete(run, job, event, event.output, now)
    return _fail(run, job, event, f"rejected: {event.reason}" if event.reason else "rejected", now)


def plan_event(run: Run, event: StatusEvent, now: datetime) -> Transition | Rejection | None:
    """An event reached the event job's waiting attempt: the job succeeds with its payload when
    the payload makes its ``match`` true (checked again here: the sender read the run earlier)."""
    assert event.job is not None
    job = run.definition.job(event.job)
    if job.event is None:
        return Rejection(action="ignored", reason=f"job {job.name!r} is not an event job")
    waiting = _waiting(run, job, event, now)
    if not isinstance(waiting, bool):
        return waiting
    if not matches(run, job, event.output):
        return Rejection(action="ignored", reason=f"the event's payload does not match job {job.name!r}")
    return _complete(run, job, event, event.output, now)


def plan_callback(run: Run, event: StatusEvent, now: datetime) -> Transition | Rejection | None:
    """The token of the callback job's attempt was completed: with an output the job succeeds with
    it, with an error the attempt fails (and its retry rules apply). Taken while the attempt
    waits, or while its code still runs; a completion of any other attempt changes nothing."""
    assert event.job is not None
    job = run.definition.job(event.job)
    if job.callback is None:
        return Rejection(action="ignored", reason=f"job {job.name!r} is not a callback job")
    record = run.jobs[job.name]
    if run.state != RunState.RUNNING:
        return Rejection(action="ignored", reason=f"the run has ended ({run.state})")
    if not accepts_completion(job, record, event.attempt):
        # Applied before (what followed may be unrecorded), or stale.
        waiting = _waiting(run, job, event, now)
        if isinstance(waiting, bool):
            return Rejection(
                action="ignored", reason=f"attempt {event.attempt} of {job.name!r} has not begun"
            )
        return waiting
    error = completion_error(event)
    if error is not None:
        return callback_failed(run, job, event, error, now)
    return _complete(run, job, event, event.output, now)


def _event_timed_out(run: Run, job: Job, event: StatusEvent, now: datetime) -> Transition:
    """No event reached the waiting attempt in time: like a failed attempt, it gets another (which
    waits at once, for ``timeout`` again) while the job's retries, ``on`` and ``max_duration``
    allow; else the job fails, and the run with it unless the job may fail."""
    assert job.event is not None
    record = run.jobs[job.name]
    conditions = run_is(RunState.RUNNING) | job_is(job.name, JobState.WAITING, event.attempt)
    attempts = event.attempt - (record.first_attempt or 1) + 1
    retried = attempts <= job.retries and retry.is_retried(job.retry, EVENT_TIMED_OUT)
    due = now + timedelta(seconds=job.event.timeout)
    if retried and past_max_duration(job, record, now):
        retried = False
    if failure_handlers.tolerated(run, job, retry_left=retried, error=EVENT_TIMED_OUT):
        return tolerate_failure(run, event, conditions, EVENT_TIMED_OUT, now)
    if not retried:
        error = f"failed after {attempts} attempt(s): {EVENT_TIMED_OUT}"
        return fail_run(run, event.key, conditions, job.name, f"job {job.name!r} {error}", now, event.attempt)
    return Transition(
        conditions=conditions | no_failure_since(run.failure),
        changes=job_changed(
            job.name,
            attempt=event.attempt + 1,
            caused_by=event.key,
            claimed_at=now,
            error=EVENT_TIMED_OUT,
            due_at=due,
        ),
        statuses=(event_awaited(run, job, event.attempt + 1),),
        wake_at=due,
    )


def _waiting(run: Run, job: Job, event: StatusEvent, now: datetime) -> bool | Transition | Rejection | None:
    """True when the job waits at the event's attempt in a running run; else what to do: a
    redelivery of the event that completed (or failed) the attempt finishes what followed from
    it, anything else is stale."""
    record = run.jobs[job.name]
    if run.state != RunState.RUNNING:
        return Rejection(action="ignored", reason=f"the run has ended ({run.state})")
    if record.attempt == event.attempt and record.state == JobState.WAITING:
        return True
    applied = record.caused_by == event.key
    if record.attempt == event.attempt and (applied or record.state == JobState.FAILED):
        # Applied before (a retry's attempt dispatched, the job completed), or failed at this
        # attempt and tolerated (by this event or the one that won the race): what followed may
        # not be recorded yet (a write that lost to another handler records the job alone), and
        # the replay sends an attempt a crash kept from being invoked.
        return plan_progress(run, event.key, now)
    return Rejection(
        action="ignored",
        reason=f"{event.key} is stale: {job.name!r} is {record.state} at attempt {record.attempt}",
    )


def _complete(run: Run, job: Job, event: StatusEvent, output: Any, now: datetime) -> Transition:
    """The waiting attempt succeeds with ``output``, with all that follows, in one write guarded
    by the version read (another job finishing meanwhile makes it decide again)."""
    completion = job_changed(
        job.name, state=JobState.SUCCEEDED, output=output, finished_at=now, caused_by=event.key
    )
    progress = plan_progress(record_success(run, job.name, output), event.key, now)
    if progress is None:
        return Transition(conditions=at_version(run.version), changes=completion)
    return replace(progress, conditions=at_version(run.version), changes=completion | progress.changes)


def _fail(run: Run, job: Job, event: StatusEvent, error: str, now: datetime) -> Transition:
    """The waiting attempt fails (a job without code is not retried), and with it the run, unless
    the job may fail (``allow_failure``, or a failure handler)."""
    conditions = run_is(RunState.RUNNING) | job_is(job.name, JobState.WAITING, event.attempt)
    if failure_handlers.tolerated(run, job, retry_left=False, error=error):
        return tolerate_failure(run, event, conditions, error, now)
    return fail_run(run, event.key, conditions, job.name, f"job {job.name!r}: {error}", now, event.attempt)


def _plan_deadline(run: Run, event: StatusEvent, now: datetime) -> Transition | Rejection | None:
    if event.attempt != run.redrives:
        reason = f"a deadline of round {event.attempt}; the run is in round {run.redrives}"
        return Rejection(action="ignored", reason=reason)
    if run.state != RunState.RUNNING:
        if run.finished_by == event.key:
            return None
        return Rejection(action="ignored", reason=f"the run has already ended ({run.state})")
    if run.failure is not None and run.failure.caused_by == event.key:
        return None
    if run.exit is not None and run.exit.caused_by == event.key:
        return None
    if run.exit is not None:
        reason = "the exit handlers run to their end: the run ends as it was going to"
        return Rejection(action="ignored", reason=reason)
    if run.failure is not None:
        # The handlers started before the deadline (fired before, it would be the failure): they
        # may be giving back what the run holds, so they run to their end (each within its own
        # job ``timeout``) and the run ends with the failure that started them.
        reason = "the failure handlers run to their end: the run ends with the failure that started them"
        return Rejection(action="ignored", reason=reason)
    if run.deadline is None:
        return Rejection(action="ignored", reason="the run has no deadline")
    # Like a cancel that fails the run: what is in flight or waiting stops, the failure handlers
    # (where the spec has them) run first, with the deadline as the failure.
    return stop_run(run, event.key, FAILED, RUN_DEADLINE_EXCEEDED, now)
