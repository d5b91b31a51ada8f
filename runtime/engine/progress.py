"""The engine's decisions, without I/O: given a run and a status event, what changes in the run,
which job attempts are dispatched and which run statuses are recorded.

``runtime.engine.decide`` routes each event here: a job's success goes to ``plan_success``, its
failure to ``plan_failure``, the run's start to ``plan_progress``, which starts the jobs
``ready_jobs`` finds (or skips them, when their ``when`` says so) and moves the run on with
``advance_phase`` once a phase is done; ``fail_run`` and ``stop_run`` end it (or start its
failure handlers). The operations are in ``runtime.engine.operations``, timers and answers in
``runtime.engine.timers``, a ``for_each`` job's start in ``runtime.engine.fanout``, and
``runtime.engine.replay`` repeats what a crashed handling of the same event may not have
finished.

Every ``Transition`` carries the conditions it was computed under; the store applies it only if
they still hold, so concurrent handlers never overwrite each other (one of them wins, the others
re-read and decide again). Everything a transition causes is stamped with the key of the event
that caused it, so a redelivered event can finish what a crashed handler began.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from runtime import limits
from runtime.definition.model import EXIT_PHASE, HANDLERS_PHASE, Job, Phase
from runtime.documents.events import JobEvent
from runtime.documents.failures import Exit, Failure
from runtime.documents.run import (
    Fields,
    JobRecord,
    Run,
    StatusEvent,
    at_version,
    exit_started,
    failure_started,
    job_changed,
    job_is,
    job_set,
    no_failure_since,
    phase_completed,
    phase_entered,
    run_ended,
    run_is,
)
from runtime.engine import failure_handlers, fanout, retry
from runtime.engine.event_jobs import wait_began
from runtime.engine.fanout import FanOutStart
from runtime.engine.joins import (
    WAITED_UNTIL,
    condition_results,
    depends_outcome,
    is_truthy,
    job_event,
    join_outcome,
    phase_finished,
    ready_jobs,
    uncaught,
    upstream_failed,
    wait_until,
    waits_until,
    when_holds,
)
from runtime.engine.transition import Transition, expire_at_for, expiry_of, run_status, with_progress
from runtime.statuses import (
    FAILED,
    RUN_ENDS,
    FailureReason,
    JobState,
    RunState,
    StatusName,
)

__all__ = ["is_truthy", "ready_jobs", "when_holds"]
"""Re-exported: how jobs start is decided in ``runtime.engine.joins``."""


def record_success(run: Run, job: str, output: Any, output_ref: str | None = None) -> Run:
    """The run once ``job``'s current attempt has succeeded with ``output`` (or ``output_ref``)."""
    succeeded = replace(run.jobs[job], state=JobState.SUCCEEDED, output=output, output_ref=output_ref)
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
        changes=job_changed(event.job, state=JobState.SUCCEEDED, output=event.output, finished_at=now)
        | job_changed(event.job, **({"output_ref": event.output_ref} if event.output_ref else {})),
    )
    progress = plan_progress(record_success(run, event.job, event.output, event.output_ref), event.key, now)
    if progress is None:
        return replace(completion, conditions=at_version(run.version), fallback=completion)
    return Transition(
        conditions=at_version(run.version),
        changes={**completion.changes, **progress.changes},
        dispatches=progress.dispatches,
        statuses=progress.statuses,
        expiry=progress.expiry,
        wake_at=progress.wake_at,
        fan_outs=progress.fan_outs,
        fallback=completion,
    )


def advance_phase(
    run: Run, phase: Phase, key: str, expire_at: datetime | None = None
) -> tuple[Fields, tuple[StatusEvent, ...], Phase | None, Run]:
    """Complete ``phase`` (every job in it is done) through event ``key``: start the phase after
    it, or end the run successfully after the last (to be deleted at ``expire_at``), or start its
    exit handlers instead of ending it. The changes, the statuses to record, the phase the run is
    in now (None when the run has ended) and the run as it is then (with its ``exit``)."""
    changes = phase_completed(phase.name, key)
    statuses = [run_status(run, StatusName.PHASE_COMPLETED, phase=phase.name)]
    following = run.definition.next_phase(phase.name)
    if phase.name == EXIT_PHASE and run.exit is not None:
        # The exit handlers have all finished: the run ends as it was going to, or failed by one
        # that says so.
        state, error = failure_handlers.exit_end(run, RunState(run.exit.status), run.exit.error)
        changes |= run_ended(state, key, error, expire_at)
        statuses.append(replace(run_status(run, RUN_ENDS[state], error=error), reason=run.exit.cancel_reason))
        return changes, tuple(statuses), None, run
    if phase.name == HANDLERS_PHASE and run.failure is not None:
        # The failure handlers have all finished: the run ends as it would have without them.
        state, failure = failure_handlers.end_state(run.failure.reason), run.failure
        ending = Exit(
            status=state.value,
            error=failure.error,
            phase=failure.phase,
            caused_by=key,
            cancel_reason=failure.cancel_reason,
        )
    elif following is None:
        ending = Exit(status=RunState.SUCCEEDED.value, error=None, phase=phase.name, caused_by=key)
    else:
        return changes | phase_entered(following.name), tuple(statuses), following, run
    if failure_handlers.has_exit_handlers(run):
        exit_phase = run.definition.phase(EXIT_PHASE)
        return changes | exit_started(ending, EXIT_PHASE), tuple(statuses), exit_phase, exiting(run, ending)
    state = RunState(ending.status)
    changes |= run_ended(state, key, ending.error, expire_at)
    statuses.append(
        replace(run_status(run, RUN_ENDS[state], error=ending.error), reason=ending.cancel_reason)
    )
    return changes, tuple(statuses), None, run


def exiting(run: Run, ending: Exit) -> Run:
    """The run in its exit handlers' phase, to end as ``ending`` says."""
    return replace(run, phase=EXIT_PHASE, exit=ending)


def _into_exit(run: Run, ending: Exit, conditions: Fields, changes: Fields, now: datetime) -> Transition:
    """Start the exit handlers instead of ending the run (``changes``: what else the decision
    writes); the run ends as ``ending`` says once they have finished."""
    started = Transition(conditions=conditions, changes=changes | exit_started(ending, EXIT_PHASE))
    return with_progress(started, plan_progress(exiting(run, ending), ending.caused_by, now))


def waited(record: JobRecord, output: dict[str, Any], key: str, now: datetime) -> JobRecord:
    """A ``wait: {until}`` job whose time had gone by when it became ready: it succeeds at once,
    with its next attempt."""
    return JobRecord(
        state=JobState.SUCCEEDED,
        attempt=record.attempt + 1,
        output=output,
        caused_by=key,
        claimed_at=now,
        finished_at=now,
        first_attempt=record.first_attempt,
    )


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
    fan_outs: list[FanOutStart] = []
    not_run: dict[str, JobRecord] = {}
    phase: Phase | None = run.definition.phase(run.phase)
    while phase is not None:
        while ready := ready_jobs(phase, states):
            for job in ready:
                conditions |= job_is(job.name, JobState.PENDING)
                results = condition_results(run, job, outputs)
                fanout.require_loaded(run, job.when or "", results)
                fanout.require_loaded(run, job.wait_until or "", results)
                outcome = join_outcome(job, states)
                if job.depends is not None:
                    try:
                        outcome = depends_outcome(job, run, states, results)
                    except Exception as exc:  # as for 'when': JMESPath raises more than its errors
                        guard = run_is(RunState.RUNNING, run.phase) | job_is(job.name, JobState.PENDING)
                        return fail_run(
                            run, key, guard, job.name, f"the 'depends' of {job.name!r} failed: {exc}", now
                        )
                try:
                    starts = outcome is None and when_holds(job, run, results)
                except Exception as exc:  # JMESPath's functions raise more than JMESPathError
                    # A condition that cannot be evaluated fails the run rather than the handler:
                    # raising would fail every redelivery of this event and the run would hang.
                    # Nothing decided in this pass is kept: a failed run dispatches nothing more.
                    return fail_run(
                        run,
                        key,
                        run_is(RunState.RUNNING, run.phase) | job_is(job.name, JobState.PENDING),
                        job.name,
                        f"the 'when' of {job.name!r} failed: {exc}",
                        now,
                    )
                started = fanout.begin(run, job, results, key, now) if starts and job.for_each else None
                if isinstance(started, str):
                    guard = run_is(RunState.RUNNING, run.phase) | job_is(job.name, JobState.PENDING)
                    return fail_run(run, key, guard, job.name, started, now)
                if started is not None:  # a fan-out: its items are dispatched, not the job
                    states[job.name], changes = (
                        started.record.state,
                        changes | job_set(job.name, started.record),
                    )
                    outputs, fan_outs = outputs | started.outputs, fan_outs + list(started.starts)
                    continue
                # A wait, approval or event job waits for its timer (or an answer, or an event)
                # instead of a function.
                due = waits_until(job, now) if starts else None
                if starts and job.wait_until is not None:
                    try:
                        due = wait_until(job, run, results)
                    except Exception as exc:  # as for 'when': JMESPath raises more than its errors
                        guard = run_is(RunState.RUNNING, run.phase) | job_is(job.name, JobState.PENDING)
                        return fail_run(
                            run, key, guard, job.name, f"the wait of {job.name!r} failed: {exc}", now
                        )
                    if due <= now:  # a time gone by: the wait is over before it began
                        states[job.name], output = JobState.SUCCEEDED, {WAITED_UNTIL: due.isoformat()}
                        outputs = outputs | {job.name: output}
                        changes |= job_set(job.name, waited(run.jobs[job.name], output, key, now))
                        continue
                states[job.name] = (
                    (JobState.DISPATCHED if due is None else JobState.WAITING)
                    if starts
                    else (outcome or JobState.SKIPPED)
                )
                # A job a redrive reopened keeps counting its attempts: the job wrapper claims
                # each attempt number once, so a number is never used twice.
                record = run.jobs[job.name]
                attempt = record.attempt + 1 if starts else record.attempt
                decided = JobRecord(
                    state=states[job.name],
                    attempt=attempt,
                    caused_by=key,
                    claimed_at=now,
                    first_attempt=record.first_attempt,
                    due_at=due,
                    started_at=now if starts else None,
                )
                changes |= job_set(job.name, decided)
                if decided.state == JobState.UPSTREAM_FAILED:
                    not_run[job.name] = decided
                if due is not None:
                    wakes.append(due)
                    began = wait_began(run, job, attempt)
                    if began is not None:
                        statuses.append(began)
                elif starts:
                    dispatches.append(job_event(run, job, attempt, outputs))
        if not phase_finished(phase, states):
            break
        phase_changes, phase_statuses, phase, run = advance_phase(run, phase, key, expire_at_for(run, now))
        changes |= phase_changes
        statuses.extend(phase_statuses)
    culprit = uncaught(run, states, ended=phase is None)
    if culprit is not None:
        return fail_uncaught(run, key, conditions, culprit, not_run, now)
    if not changes:
        return None
    return Transition(
        conditions=conditions,
        changes=changes,
        dispatches=tuple(dispatches),
        statuses=tuple(statuses),
        expiry=expiry_of(expire_at_for(run, now)) if phase is None else None,
        wake_at=min(wakes, default=None),
        fan_outs=tuple(fan_outs),
    )


MAX_DURATION_EXCEEDED = "max duration exceeded"


def past_max_duration(job: Job, record: JobRecord, until: datetime) -> bool:
    """Whether ``job``, whose first attempt of this round started at ``record.started_at``, would
    be past its ``max_duration`` at ``until`` (the time its next attempt would start)."""
    if job.max_duration is None or record.started_at is None:
        return False
    return (until - record.started_at).total_seconds() >= job.max_duration


def _retried(job: Job, attempts: int, error: str) -> bool:
    """Whether the ``attempts``-th failed attempt of this round gets another under the policy. A
    fan-out's items are retried, not the fan-out: its failure is its last."""
    return attempts <= job.retries and retry.is_retried(job.retry, error) and not job.for_each


def failure_is_final(run: Run, event: StatusEvent) -> bool:
    """Whether the failed attempt ``event`` is its job's last, as ``plan_failure`` decides it: no
    retry follows (the policy's attempts are used up or it does not retry that error, the run has
    ended, or the failure handlers run and it is not one of them). What the notifier asks of a
    ``failed`` report, which it may read before the orchestrator applied it or long after: an
    attempt followed by another in its round was not the last; a redrive's first attempt follows
    the last of the round before."""
    assert event.job is not None
    record = run.jobs.get(event.job)
    if record is None:
        return True
    first = record.first_attempt or 1
    if event.attempt < first:
        return event.attempt == first - 1
    if event.attempt < record.attempt:
        return False
    if run.state != RunState.RUNNING:
        return True
    job = run.definition.job(event.job)
    retried = _retried(job, event.attempt - first + 1, event.error or "")
    return not retried or failure_handlers.tolerated(run, job, retried, event.error or "")


def plan_failure(run: Run, event: StatusEvent, now: datetime) -> Transition | None:
    """Retry the job with its next attempt, or fail it and, while the run is running, the run.
    None when the failure is stale or was handled before."""
    assert event.job is not None
    record = run.jobs.get(event.job)
    if record is not None and (record.state, record.attempt) == (JobState.FAILED, event.attempt):
        # Recorded before (a tolerated failure whose whole plan lost a race, or a redelivery): what
        # follows from it may still be undone.
        return plan_progress(run, event.key, now)
    if record is None or record.state != JobState.DISPATCHED or record.attempt != event.attempt:
        return None
    job = run.definition.job(event.job)
    conditions = job_is(job.name, JobState.DISPATCHED, event.attempt)
    error = limits.bounded(event.error or "the job failed without saying why")
    if run.state == RunState.RUNNING:
        conditions |= run_is(RunState.RUNNING)
        attempts = event.attempt - (record.first_attempt or 1) + 1
        retried = _retried(job, attempts, error)
        delay = retry.retry_delay(
            job.retry, attempts, retry.jitter_source(run.run_id, job.name, event.attempt)
        )
        exceeded = past_max_duration(job, record, now + timedelta(seconds=delay if retried else 0))
        if exceeded:
            retried, error = False, limits.bounded(f"{MAX_DURATION_EXCEEDED}: {error}")
        if failure_handlers.tolerated(run, job, retried, error):
            return tolerate_failure(run, event, conditions, error, now)
        if retried:
            # A delayed attempt waits for its timer, which dispatches it (runtime.engine.timers).
            due = now + timedelta(seconds=delay) if delay > 0 else None
            state = {} if due is None else {"state": JobState.WAITING, "due_at": due}
            return Transition(
                conditions=conditions | no_failure_since(run.failure),
                changes=job_changed(
                    job.name,
                    attempt=event.attempt + 1,
                    caused_by=event.key,
                    claimed_at=now,
                    error=error,
                    **state,
                ),
                dispatches=() if due is not None else (job_event(run, job, event.attempt + 1),),
                wake_at=due,
            )
        if exceeded:
            message = (
                f"job {job.name!r} failed after {attempts} attempt(s), past its max_duration of "
                f"{job.max_duration}s: {error}"
            )
        elif attempts <= job.retries and not job.for_each:
            kind = retry.error_type(error)
            message = f"job {job.name!r} failed with {kind}, which its retry policy does not retry: {error}"
        else:
            message = f"job {job.name!r} failed after {attempts} attempt(s): {error}"
        return fail_run(run, event.key, conditions, job.name, message, now, event.attempt)
    return Transition(
        conditions=conditions, changes=job_changed(job.name, state=JobState.FAILED, error=error)
    )


def stop_run(
    run: Run, key: str, reason: FailureReason, error: str, now: datetime, cancel_reason: str | None = None
) -> Transition:
    """End the running run now, ``cancelled`` or (its deadline passed) ``failed``: the attempts in
    flight and the jobs waiting for a timer are cancelled, so what they report or fire changes
    nothing. When the spec has failure handlers that have not started they run first; while they
    run, a cancel ends the run at once (the deadline does not: ``runtime.engine.timers``).
    Guarded by the version read: a handler that dispatched a job meanwhile makes this decision
    again, and that job is cancelled too."""
    changes: Fields = {}
    for name, record in run.jobs.items():
        if record.state in failure_handlers.STOPPED_BY_CANCEL:
            changes |= job_changed(name, state=JobState.CANCELLED)
    if failure_handlers.has_handlers(run):
        failure = Failure(
            reason=reason, phase=run.phase, error=error, caused_by=key, cancel_reason=cancel_reason
        )
        return _into_handlers(failure_handlers.with_jobs_cancelled(run), failure, changes, now)
    state = failure_handlers.end_state(reason)
    if failure_handlers.has_exit_handlers(run):
        phase = run.phase if run.failure is None else run.failure.phase
        ending = Exit(
            status=state.value, error=error, phase=phase, caused_by=key, cancel_reason=cancel_reason
        )
        stopped = failure_handlers.with_jobs_cancelled(run)
        return _into_exit(stopped, ending, at_version(run.version), changes, now)
    expire_at = expire_at_for(run, now)
    return Transition(
        conditions=at_version(run.version),
        changes=changes | run_ended(state, key, error, expire_at),
        statuses=(replace(run_status(run, RUN_ENDS[state], error=error), reason=cancel_reason),),
        expiry=expiry_of(expire_at),
    )


def fail_run(
    run: Run, key: str, conditions: Fields, job: str, error: str, now: datetime, attempt: int | None = None
) -> Transition:
    """Fail ``job`` and with it the run: at once, or (when the spec has failure handlers) once
    they have run; the pending jobs its failure decided are ``upstream_failed``. A failure while
    the handlers run is only recorded: the handlers go on."""
    if run.failure is not None or run.exit is not None:
        failed = failure_handlers.with_job_failed(run, job, error)
        progress = plan_progress(failed, key, now)
        changes = job_changed(job, state=JobState.FAILED, error=error)
        return with_progress(Transition(conditions=conditions, changes=changes), progress)
    states = {name: record.state for name, record in run.jobs.items()} | {job: JobState.FAILED}
    changes = job_changed(job, state=JobState.FAILED, error=error)
    not_run = upstream_failed(run.definition, states)
    for name in not_run:
        changes |= job_changed(name, state=JobState.UPSTREAM_FAILED, caused_by=key, claimed_at=now)
    if failure_handlers.has_handlers(run):
        failure = Failure(
            reason=FAILED, phase=run.phase, job=job, attempt=attempt, error=error, caused_by=key
        )
        decided = replace(
            run,
            jobs={
                **run.jobs,
                **{name: replace(run.jobs[name], state=JobState.UPSTREAM_FAILED) for name in not_run},
            },
        )
        return _into_handlers(decided, failure, changes, now)
    if failure_handlers.has_exit_handlers(run):
        ending = Exit(status=RunState.FAILED.value, error=error, phase=run.phase, caused_by=key)
        decided = replace(
            run,
            jobs={
                **run.jobs,
                job: replace(run.jobs[job], state=JobState.FAILED, error=error),
                **{name: replace(run.jobs[name], state=JobState.UPSTREAM_FAILED) for name in not_run},
            },
        )
        return _into_exit(decided, ending, at_version(run.version), changes, now)
    expire_at = expire_at_for(run, now)
    return Transition(
        conditions=conditions,
        changes=changes | run_ended(RunState.FAILED, key, error, expire_at),
        statuses=(run_status(run, RUN_ENDS[RunState.FAILED], error=error),),
        expiry=expiry_of(expire_at),
    )


def fail_uncaught(
    run: Run, key: str, conditions: Fields, job: str, not_run: dict[str, JobRecord], now: datetime
) -> Transition:
    """Fail the run because of ``job``'s failure, which no job after it caught: the jobs this pass
    found ``upstream_failed`` (``not_run``) are recorded with it, what else it decided is not (a
    failed run dispatches nothing more)."""
    record = run.jobs[job]
    error = f"job {job!r} failed and no job after it accepts the failure: {record.error or 'it failed'}"
    decided = replace(run, jobs={**run.jobs, **not_run})
    failing = fail_run(decided, key, conditions, job, error, now, record.attempt)
    marks: Fields = {}
    for name, decision in not_run.items():
        marks |= job_set(name, decision)
    return replace(failing, changes=marks | failing.changes)


def _into_handlers(run: Run, failure: Failure, changes: Fields, now: datetime) -> Transition:
    """Start the failure handlers because of ``failure`` (``changes``: what else the decision
    writes); the run ends once they have finished (at once when all of them are skipped). Guarded
    by the version read: two failures racing start them once, and their ``results`` hold every
    success recorded before."""
    failing = failure_handlers.failing(run, failure)
    progress = plan_progress(failing, failure.caused_by, now)
    started = Transition(
        conditions=at_version(run.version), changes=changes | failure_started(failure, HANDLERS_PHASE)
    )
    return with_progress(started, progress)


def tolerate_failure(
    run: Run, event: StatusEvent, conditions: Fields, error: str, now: datetime
) -> Transition:
    """The last attempt of a job that may fail (``allow_failure``, or any job while the failure
    handlers run) failed: record it and go on, in one write guarded by the version read; the
    failure alone (guarded by the job's state) when another handler wrote first."""
    assert event.job is not None
    changes = job_changed(event.job, state=JobState.FAILED, error=error, finished_at=now)
    completion = Transition(conditions=conditions, changes=changes)
    progress = plan_progress(failure_handlers.with_job_failed(run, event.job, error), event.key, now)
    return replace(
        with_progress(completion, progress), conditions=at_version(run.version), fallback=completion
    )
