"""The engine's decisions, without I/O: given a run and a status event, what changes in the run,
which job attempts are dispatched and which run statuses are recorded.

``decide`` is the entry point: a job's success goes to ``plan_success``, its failure to
``plan_failure``, the run's start to ``plan_progress``, which starts the jobs ``ready_jobs``
finds (or skips them, when their ``when`` says so) and moves the run on with ``advance_phase``
once a phase is done. The operations people ask for are events too: ``plan_cancel`` ends a run
``cancelled``, ``plan_redrive`` reopens a failed or cancelled one. ``replay`` repeats what an
earlier, crashed handling of the same event may not have finished.

Every ``Transition`` carries the conditions it was computed under; the store applies it only if
they still hold, so concurrent handlers never overwrite each other (one of them wins, the others
re-read and decide again). Everything a transition causes is stamped with the key of the event
that caused it, so a redelivered event can finish what a crashed handler began.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jmespath

from runtime import limits, retry
from runtime.definition.model import Job, Phase, Workflow
from runtime.documents import (
    DONE,
    REDRIVABLE,
    RUN_ENDS,
    Fields,
    JobRecord,
    JobState,
    Run,
    RunState,
    StatusEvent,
    StatusName,
    at_version,
    job_changed,
    job_is,
    job_set,
    phase_completed,
    phase_entered,
    run_ended,
    run_is,
    run_reopened,
)
from runtime.events import JobEvent

LAMBDA_RETRY_DELAY = timedelta(seconds=50)
"""Lambda retries a failed asynchronous invocation of the orchestrator a minute later at the
earliest (a little less here, for clock differences): an event that repeats sooner is a
duplicate, not a retry after a crash, and the replay does not dispatch again for it. (Nothing
else depends on timing: the job wrapper's lease does not.)"""


def utcnow() -> datetime:
    return datetime.now(UTC)


def age(then: datetime, now: datetime) -> timedelta:
    """How long ago ``then`` was; a naive ``then`` (a client without tz_aware) is UTC."""
    return now - then.replace(tzinfo=then.tzinfo or UTC)


@dataclass(frozen=True)
class Expiry:
    """When the statuses of a run are deleted, set by the transition that ends (or reopens) it."""

    at: datetime | None
    """None: kept for good again (a redriven run)."""


@dataclass(frozen=True, kw_only=True)
class Transition:
    """One write to a run and what it causes once it is made."""

    conditions: Fields
    """Field -> value the run document must still have for ``changes`` to apply."""
    changes: Fields
    dispatches: tuple[JobEvent, ...] = ()
    statuses: tuple[StatusEvent, ...] = ()
    """Run-level statuses to record once the write is made."""
    expiry: Expiry | None = None
    """The run's statuses get this expiry once they are recorded (None: no change)."""
    wake_at: datetime | None = None
    """The earliest timer the write creates (lowers the run's ``wakeAt``, the sweep's index)."""
    fallback: Transition | None = None
    """For a success planned against the whole run (its version): the completion alone, guarded
    by the job's own state, for when another handler wrote first; the rest is then decided again
    on what that write returns."""


@dataclass(frozen=True, kw_only=True)
class Rejection:
    """The run does not take the event: it names a job the run does not have (``dropped``), or
    it is stale or none of the orchestrator's business (``ignored``)."""

    action: Literal["dropped", "ignored"]
    reason: str


def initial_run(definition: Workflow, run_id: str, run_input: Any) -> Run:
    """A run as it starts: every job pending, the first phase current."""
    return Run(
        run_id=run_id,
        definition=definition,
        input=run_input,
        state=RunState.RUNNING,
        phase=definition.phase_order()[0].name,
        jobs={job.name: JobRecord() for job in definition.jobs()},
    )


def decide(run: Run, event: StatusEvent, now: datetime) -> Transition | Rejection | None:
    """What ``event`` does to ``run`` as it is stored; None: nothing to write. A write that would
    grow the run document past what MongoDB stores fails the run instead (or, once the run has
    ended, is not made): MongoDB would refuse it on every redelivery and the run would stall."""
    decision = _decide(run, event, now)
    if not isinstance(decision, Transition) or run.stored_bytes == 0:
        return decision
    growth = sum(limits.field_bytes(path, value) for path, value in decision.changes.items())
    grown = run.stored_bytes + growth
    if grown <= limits.RUN_DOCUMENT_MAX_BYTES:
        return decision
    if event.job is not None and event.status == StatusName.SUCCESS:
        what = f"the output of job {event.job!r} ({limits.bson_bytes(event.output):,} bytes as BSON)"
    else:
        what = f"recording {event.key}"
    reason = (
        f"{what} would grow the run document from {run.stored_bytes:,} to {grown:,} bytes, past the "
        f"{limits.RUN_DOCUMENT_MAX_BYTES:,} a run may use of MongoDB's "
        f"{limits.MONGODB_DOCUMENT_BYTES:,}-byte document limit (store large results elsewhere and "
        "return a reference)"
    )
    return refused_write(run, event, reason, now)


def refused_write(run: Run, event: StatusEvent, reason: str, now: datetime) -> Transition | Rejection:
    """MongoDB cannot store what ``event`` would write (``reason``): a running run fails with the
    reason, naming the event's job when it has one; an ended run is left as it is."""
    if run.state != RunState.RUNNING:
        return Rejection(action="ignored", reason=f"the run has ended, and {reason}")
    conditions = run_is(RunState.RUNNING)
    record = None if event.job is None else run.jobs.get(event.job)
    if (
        event.job is not None
        and record is not None
        and (record.state, record.attempt) == (JobState.DISPATCHED, event.attempt)
    ):
        # The event's own attempt is what could not be recorded: the job fails with the run.
        guarded = conditions | job_is(event.job, JobState.DISPATCHED, event.attempt)
        return _fail_run(run, event.key, guarded, event.job, reason, now)
    expire_at = _expire_at(run, now)
    return Transition(
        conditions=conditions,
        changes=run_ended(RunState.FAILED, event.key, reason, expire_at),
        statuses=(_run_status(run, RUN_ENDS[RunState.FAILED], error=reason),),
        expiry=_expiry(expire_at),
    )


def _decide(run: Run, event: StatusEvent, now: datetime) -> Transition | Rejection | None:
    if event.job is not None and event.job not in run.jobs:
        return Rejection(action="dropped", reason=f"run {run.run_id!r} has no job {event.job!r}")
    if event.status == StatusName.SUCCESS:
        assert event.job is not None
        record = run.jobs[event.job]
        if record.attempt == event.attempt and record.state == JobState.DISPATCHED:
            return plan_success(run, event, now)
        if record.attempt == event.attempt and record.state == JobState.SUCCEEDED:
            # Recorded before (a redelivery, or a handling that lost a race): what follows from it
            # may still be undone.
            return plan_progress(run, event.key, now)
        return Rejection(action="ignored", reason="stale success")
    if event.status == StatusName.FAILED:
        return plan_failure(run, event, now)
    # Imported here: the decisions on time build on this module's (plan_progress, the run's end).
    from runtime import timers

    if event.status == StatusName.WORKFLOW_STARTED:
        return timers.with_deadline(run, plan_progress(run, event.key, now), now)
    if event.status == StatusName.CANCEL_REQUESTED:
        return plan_cancel(run, event, now)
    if event.status == StatusName.REDRIVE_REQUESTED:
        redrive = plan_redrive(run, event, now)
        if not isinstance(redrive, Transition):
            return redrive
        return timers.with_deadline(reopened(run), redrive, now, fresh=True)
    if event.status == StatusName.TIMER_FIRED:
        return timers.plan_timer(run, event, now)
    if event.status in (StatusName.APPROVED, StatusName.REJECTED):
        return timers.plan_answer(run, event, now)
    return Rejection(action="ignored", reason=f"the orchestrator does not act on '{event.status}'")


def record_success(run: Run, job: str, output: Any) -> Run:
    """The run as it is once ``job``'s current attempt has succeeded with ``output``."""
    succeeded = replace(run.jobs[job], state=JobState.SUCCEEDED, output=output)
    return replace(run, jobs={**run.jobs, job: succeeded})


def plan_success(run: Run, event: StatusEvent, now: datetime) -> Transition | None:
    """Record the success of the job's current attempt together with all that follows from it,
    in one write guarded by the version read. None when the job is not dispatched at that
    attempt (the success is stale, or was recorded before)."""
    assert event.job is not None
    record = run.jobs.get(event.job)
    if record is None or record.state != JobState.DISPATCHED or record.attempt != event.attempt:
        return None
    completion = Transition(
        conditions=job_is(event.job, JobState.DISPATCHED, event.attempt),
        changes=job_changed(event.job, state=JobState.SUCCEEDED, output=event.output, finished_at=now),
    )
    progress = plan_progress(record_success(run, event.job, event.output), event.key, now)
    if progress is None:
        return replace(completion, conditions=at_version(run.version), fallback=completion)
    return Transition(
        conditions=at_version(run.version),
        changes={**completion.changes, **progress.changes},
        dispatches=progress.dispatches,
        statuses=progress.statuses,
        expiry=progress.expiry,
        wake_at=progress.wake_at,
        fallback=completion,
    )


def is_truthy(value: Any) -> bool:
    """JMESPath's truthiness: false, null, the empty string, array and object are false; every
    other value, 0 and 0.0 included, is true (Python's would make 0 false)."""
    if value is None or isinstance(value, bool):
        return value is True
    return not (isinstance(value, (str, list, dict)) and len(value) == 0)


def when_holds(job: Job, run: Run, results: Mapping[str, Any]) -> bool:
    """The job's ``when`` against ``{"input", "results"}``; true for a job without one. Raises
    whatever JMESPath raises for a condition that cannot be evaluated."""
    if job.when is None:
        return True
    return is_truthy(jmespath.search(job.when, {"input": run.input, "results": dict(results)}))


def ready_jobs(phase: Phase, states: Mapping[str, JobState]) -> list[Job]:
    """The jobs of ``phase`` still pending whose predecessors are all done: they start or are
    skipped now."""
    return [
        job
        for job in phase.jobs
        if states[job.name] == JobState.PENDING and all(states[name] in DONE for name in job.after)
    ]


def advance_phase(
    run: Run, phase: Phase, key: str, expire_at: datetime | None = None
) -> tuple[Fields, tuple[StatusEvent, ...], Phase | None]:
    """Complete ``phase`` (every job in it is done) through event ``key``: start the phase after
    it, or end the run successfully after the last (to be deleted at ``expire_at``). The changes,
    the statuses to record, and the phase the run is in now (None when the run has ended)."""
    changes = phase_completed(phase.name, key)
    statuses = [_run_status(run, StatusName.PHASE_COMPLETED, phase=phase.name)]
    following = run.definition.next_phase(phase.name)
    if following is None:
        changes |= run_ended(RunState.SUCCEEDED, key, expire_at=expire_at)
        statuses.append(_run_status(run, RUN_ENDS[RunState.SUCCEEDED]))
    else:
        changes |= phase_entered(following.name)
    return changes, tuple(statuses), following


def plan_progress(run: Run, key: str, now: datetime) -> Transition | None:
    """Dispatch or skip every job that is ready, complete the phase when all its jobs are done,
    start the next one, finish the run after the last. None: nothing to do."""
    if run.state != RunState.RUNNING:
        return None
    states = {name: job.state for name, job in run.jobs.items()}
    outputs = run.outputs
    conditions = run_is(RunState.RUNNING, run.phase)
    changes: Fields = {}
    dispatches: list[JobEvent] = []
    statuses: list[StatusEvent] = []
    wakes: list[datetime] = []
    phase: Phase | None = run.definition.phase(run.phase)
    while phase is not None:
        while ready := ready_jobs(phase, states):
            for job in ready:
                conditions |= job_is(job.name, JobState.PENDING)
                results = {name: outputs.get(name) for name in job.after}
                try:
                    starts = all(states[name] == JobState.SUCCEEDED for name in job.after) and when_holds(
                        job, run, results
                    )
                except Exception as exc:  # JMESPath's functions raise more than JMESPathError
                    # A condition that cannot be evaluated fails the run rather than the handler:
                    # raising would fail every redelivery of this event and the run would hang.
                    # Nothing decided in this pass is kept: a failed run dispatches nothing more.
                    return _fail_run(
                        run,
                        key,
                        run_is(RunState.RUNNING, run.phase) | job_is(job.name, JobState.PENDING),
                        job.name,
                        f"the 'when' of {job.name!r} failed: {exc}",
                        now,
                    )
                # A wait or an approval job waits for its timer (or an answer) instead of a function.
                due = None if not starts else _waits_until(job, now)
                waits = JobState.DISPATCHED if due is None else JobState.WAITING
                states[job.name] = waits if starts else JobState.SKIPPED
                # A job a redrive reopened keeps counting its attempts: the job wrapper claims
                # each attempt number once, so a number is never used twice.
                record = run.jobs[job.name]
                attempt = record.attempt + 1 if starts else record.attempt
                changes |= job_set(
                    job.name,
                    JobRecord(
                        state=states[job.name],
                        attempt=attempt,
                        caused_by=key,
                        claimed_at=now,
                        first_attempt=record.first_attempt,
                        due_at=due,
                    ),
                )
                if due is not None:
                    wakes.append(due)
                    if job.approval is not None:
                        statuses.append(approval_requested(run, job, attempt))
                elif starts:
                    dispatches.append(_job_event(run, phase, job, attempt, outputs))
        if not all(states[job.name] in DONE for job in phase.jobs):
            break
        phase_changes, phase_statuses, phase = advance_phase(run, phase, key, _expire_at(run, now))
        changes |= phase_changes
        statuses.extend(phase_statuses)
    if not changes:
        return None
    return Transition(
        conditions=conditions,
        changes=changes,
        dispatches=tuple(dispatches),
        statuses=tuple(statuses),
        expiry=_expiry(_expire_at(run, now)) if phase is None else None,
        wake_at=min(wakes, default=None),
    )


def _waits_until(job: Job, now: datetime) -> datetime | None:
    """When a wait or an approval job that starts ``now`` fires its timer; None for a job with a
    function to run."""
    if job.wait is not None:
        return now + timedelta(seconds=job.wait)
    if job.approval is not None:
        return now + timedelta(seconds=job.approval.timeout)
    return None


def approval_requested(run: Run, job: Job, attempt: int) -> StatusEvent:
    """The record that an approval job waits for an answer: what the notifier tells people."""
    return StatusEvent(
        run_id=run.run_id,
        workflow=run.workflow,
        status=StatusName.APPROVAL_REQUESTED,
        phase=job.phase,
        job=job.name,
        attempt=attempt,
        reason=None if job.approval is None else job.approval.message,
    )


def plan_failure(run: Run, event: StatusEvent, now: datetime) -> Transition | None:
    """Retry the job with its next attempt, or fail it and, while the run is running, the run.
    None when the failure is stale or was handled before."""
    assert event.job is not None
    record = run.jobs.get(event.job)
    if record is None or record.state != JobState.DISPATCHED or record.attempt != event.attempt:
        return None
    job = run.definition.job(event.job)
    conditions = job_is(job.name, JobState.DISPATCHED, event.attempt)
    error = limits.bounded(event.error or "the job failed without saying why")
    if run.state == RunState.RUNNING:
        conditions |= run_is(RunState.RUNNING)
        attempts = event.attempt - (record.first_attempt or 1) + 1
        if attempts <= job.retries and retry.is_retried(job.retry, error):
            draws = retry.jitter_source(run.run_id, job.name, event.attempt)
            delay = retry.retry_delay(job.retry, attempts, draws)
            if delay > 0:
                # The next attempt waits for its timer; it is dispatched when the timer fires.
                due = now + timedelta(seconds=delay)
                return Transition(
                    conditions=conditions,
                    changes=job_changed(
                        job.name,
                        state=JobState.WAITING,
                        attempt=event.attempt + 1,
                        caused_by=event.key,
                        due_at=due,
                        error=error,
                    ),
                    wake_at=due,
                )
            return Transition(
                conditions=conditions,
                changes=job_changed(
                    job.name, attempt=event.attempt + 1, caused_by=event.key, claimed_at=now, error=error
                ),
                dispatches=(
                    _job_event(run, run.definition.phase(job.phase), job, event.attempt + 1, run.outputs),
                ),
            )
        if attempts <= job.retries:
            kind = retry.error_type(error)
            message = f"job {job.name!r} failed with {kind}, which its retry policy does not retry: {error}"
        else:
            message = f"job {job.name!r} failed after {attempts} attempt(s): {error}"
        return _fail_run(run, event.key, conditions, job.name, message, now)
    return Transition(
        conditions=conditions, changes=job_changed(job.name, state=JobState.FAILED, error=error)
    )


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
    changes: Fields = {}
    for name, record in run.jobs.items():
        if record.state in (JobState.DISPATCHED, JobState.WAITING):
            changes |= job_changed(name, state=JobState.CANCELLED)
    error = f"cancelled: {event.reason}" if event.reason else "cancelled"
    expire_at = _expire_at(run, now)
    return Transition(
        conditions=at_version(run.version),
        changes=changes | run_ended(RunState.CANCELLED, event.key, error, expire_at),
        statuses=(replace(_run_status(run, RUN_ENDS[RunState.CANCELLED], error=error), reason=event.reason),),
        expiry=_expiry(expire_at),
    )


def reopened(run: Run) -> Run:
    """The run as a redrive leaves it before anything is dispatched: running again in its next
    round, on the same definition snapshot and in the phase it stopped in; jobs that succeeded or
    were skipped stay so, jobs that failed or were cancelled are pending with a fresh retry
    budget whose attempts go on from the last number used."""
    jobs = {
        name: JobRecord(state=JobState.PENDING, attempt=record.attempt, first_attempt=record.attempt + 1)
        if record.state in (JobState.FAILED, JobState.CANCELLED, JobState.WAITING)
        else record
        for name, record in run.jobs.items()
    }
    return replace(
        run,
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
    changes = run_reopened(again.redrives)
    for name, record in again.jobs.items():
        if record is not run.jobs[name]:
            changes |= job_set(name, record)
    statuses: tuple[StatusEvent, ...] = (_run_status(again, StatusName.WORKFLOW_REDRIVEN),)
    progress = plan_progress(again, event.key, now)
    if progress is not None:
        changes |= progress.changes
        statuses += progress.statuses
    return Transition(
        conditions=at_version(run.version),
        changes=changes,
        dispatches=() if progress is None else progress.dispatches,
        statuses=statuses,
        expiry=(progress.expiry if progress is not None else None)
        or (Expiry(None) if run.expire_at is not None else None),
    )


def replay(
    run: Run, key: str, now: datetime, redispatch_after: timedelta
) -> tuple[tuple[JobEvent, ...], tuple[StatusEvent, ...]]:
    """What the handling of event ``key`` caused and may not have finished before a crash: the
    attempts it dispatched that are still in flight, and the run statuses it recorded. Both are
    safe to repeat: the job wrapper runs an attempt once, a status report is unique. Once the run
    has ended nothing is dispatched again, nor is an attempt whose invocation Lambda is known to
    have accepted, and a dispatch is repeated only once its claim is ``redispatch_after`` old: a
    redelivery sooner than that is a duplicate of a handling that is most likely dispatching
    right now (Lambda retries a crashed handler a minute later)."""
    outputs = run.outputs
    dispatches = tuple(
        _job_event(run, run.definition.phase(job.phase), job, record.attempt, outputs)
        for job in run.definition.jobs()
        if (record := run.jobs[job.name]).caused_by == key
        and record.state == JobState.DISPATCHED
        and record.invoked_attempt != record.attempt
        and run.state == RunState.RUNNING
        and (record.claimed_at is None or age(record.claimed_at, now) >= redispatch_after)
    )
    statuses = [
        _run_status(run, StatusName.PHASE_COMPLETED, phase=phase)
        for phase, by in run.completed_by.items()
        if by == key
    ]
    statuses += [
        approval_requested(run, job, record.attempt)
        for job in run.definition.jobs()
        if job.approval is not None
        and (record := run.jobs[job.name]).caused_by == key
        and record.state == JobState.WAITING
    ]
    if run.redrives and key == _run_status(run, StatusName.REDRIVE_REQUESTED).key:
        statuses.append(_run_status(run, StatusName.WORKFLOW_REDRIVEN))
    if run.finished_by == key and run.state in RUN_ENDS:
        statuses.append(_run_status(run, RUN_ENDS[run.state], error=run.error))
    return dispatches, tuple(statuses)


def _run_status(
    run: Run, status: StatusName, phase: str | None = None, error: str | None = None
) -> StatusEvent:
    return StatusEvent(
        run_id=run.run_id,
        workflow=run.workflow,
        status=status,
        phase=phase,
        attempt=run.redrives,
        error=error,
    )


def _job_event(run: Run, phase: Phase, job: Job, attempt: int, outputs: Mapping[str, Any]) -> JobEvent:
    return JobEvent(
        run_id=run.run_id,
        workflow=run.workflow,
        phase=phase.name,
        job=job.name,
        attempt=attempt,
        input=run.input,
        results={name: outputs.get(name) for name in job.after},
    )


def _fail_run(run: Run, key: str, conditions: Fields, job: str, error: str, now: datetime) -> Transition:
    expire_at = _expire_at(run, now)
    return Transition(
        conditions=conditions,
        changes=job_changed(job, state=JobState.FAILED, error=error)
        | run_ended(RunState.FAILED, key, error, expire_at),
        statuses=(_run_status(run, RUN_ENDS[RunState.FAILED], error=error),),
        expiry=_expiry(expire_at),
    )


def _expire_at(run: Run, now: datetime) -> datetime | None:
    """When a run ending ``now`` is deleted: after its definition's ``retention_days``, if any."""
    days = run.definition.retention_days
    return None if days is None else now + timedelta(days=days)


def _expiry(expire_at: datetime | None) -> Expiry | None:
    """Statuses expire with their run; a run kept for good leaves them alone."""
    return None if expire_at is None else Expiry(expire_at)
