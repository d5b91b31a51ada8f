"""What the handling of one event caused and may not have finished before a crash, to do again
on its redelivery (``replay``): the orchestrator calls it for every event it handles, the
reconciler for every run it repairs. Pure, like the engine whose decisions it repeats.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from runtime.clock import age
from runtime.documents.events import JobEvent
from runtime.documents.run import Run, StatusEvent
from runtime.engine.event_jobs import wait_began
from runtime.engine.joins import job_event
from runtime.engine.transition import run_status
from runtime.statuses import RUN_ENDS, JobState, RunState, StatusName


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
        job_event(run, job, record.attempt, outputs)
        for job in run.definition.jobs()
        if (record := run.jobs[job.name]).caused_by == key
        and record.state == JobState.DISPATCHED
        and record.invoked_attempt != record.attempt
        and job.for_each is None  # a fan-out's items are replayed by their lanes
        and run.state == RunState.RUNNING
        and (record.claimed_at is None or age(record.claimed_at, now) >= redispatch_after)
    )
    statuses = [
        run_status(run, StatusName.PHASE_COMPLETED, phase=phase)
        for phase, by in run.completed_by.items()
        if by == key
    ]
    statuses += [
        began
        for job in run.definition.jobs()
        if (record := run.jobs[job.name]).caused_by == key
        and record.state == JobState.WAITING
        and (began := wait_began(run, job, record.attempt)) is not None
    ]
    if run.redrives and key == run_status(run, StatusName.REDRIVE_REQUESTED).key:
        statuses.append(run_status(run, StatusName.WORKFLOW_REDRIVEN))
    if run.finished_by == key and run.state in RUN_ENDS:
        statuses.append(run_status(run, RUN_ENDS[run.state], error=run.error))
    return dispatches, tuple(statuses)
