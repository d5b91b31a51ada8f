"""The engine's entry point: ``decide(run, event, now)``, what one status event does to a run
as stored, routed to the planner of its kind (a job's success or failure in
``runtime.engine.progress``, an operation in ``runtime.engine.operations``, a timer or an answer
in ``runtime.engine.timers``). Pure: it reads no clock and imports no I/O library."""

from __future__ import annotations

from datetime import datetime

from runtime import limits
from runtime.documents.run import Run, StatusEvent, job_is, run_ended, run_is
from runtime.engine import callbacks, timers
from runtime.engine.attempts import plan_not_run
from runtime.engine.fanout import UnloadedOutputs
from runtime.engine.operations import plan_cancel, plan_redrive, reopened
from runtime.engine.progress import fail_run, plan_failure, plan_progress, plan_success
from runtime.engine.transition import (
    Decision,
    LoadOutputs,
    Rejection,
    Transition,
    expire_at_for,
    expiry_of,
    run_status,
)
from runtime.statuses import RUN_ENDS, JobState, RunState, StatusName


def decide(run: Run, event: StatusEvent, now: datetime) -> Decision:
    """What ``event`` does to ``run`` as stored (``Decision``). A write that would grow the run
    document past what MongoDB stores fails the run instead (or, once it has ended, is not made):
    MongoDB would refuse it forever."""
    try:
        decision = _decide(run, event, now)
    except UnloadedOutputs as unloaded:
        return LoadOutputs(unloaded.references)
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
        return fail_run(run, event.key, guarded, event.job, reason, now, event.attempt)
    expire_at = expire_at_for(run, now)
    return Transition(
        conditions=conditions,
        changes=run_ended(RunState.FAILED, event.key, reason, expire_at),
        statuses=(run_status(run, RUN_ENDS[RunState.FAILED], error=reason),),
        expiry=expiry_of(expire_at),
    )


def _decide(run: Run, event: StatusEvent, now: datetime) -> Transition | Rejection | None:
    if event.job is not None and event.job not in run.jobs:
        return Rejection(action="dropped", reason=f"run {run.run_id!r} has no job {event.job!r}")
    if event.status == StatusName.SUCCESS:
        assert event.job is not None
        if (job := run.definition.job(event.job)).callback is not None and event.index is None:
            return callbacks.plan_code_returned(run, job, event, now)
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
    if event.status == StatusName.NOT_RUN:
        return plan_not_run(run, event, now)
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
    if event.status == StatusName.EVENT_RECEIVED:
        return timers.plan_event(run, event, now)
    if event.status == StatusName.CALLBACK_COMPLETED:
        return timers.plan_callback(run, event, now)
    if event.status == StatusName.CALLBACK_HEARTBEAT:
        return callbacks.plan_heartbeat(run, event, now)
    return Rejection(action="ignored", reason=f"the orchestrator does not act on '{event.status}'")
