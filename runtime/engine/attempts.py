"""The decisions about one job attempt that the job wrapper and the orchestrator's on-failure
path make: whether an attempt may run, and whether Lambda giving up on an invocation counts as
the attempt's failure. Pure, like the rest of the engine (which re-exports them)."""

from __future__ import annotations

from datetime import datetime

from runtime import limits
from runtime.documents.events import FailureRecord, JobEvent
from runtime.documents.items import lane_of
from runtime.documents.leases import Lease
from runtime.documents.run import JobRecord, StatusEvent
from runtime.engine.transition import Rejection
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
    lane = None if fan_out is None else fan_out.lanes.get(lane_of(job.index, fan_out.concurrency))
    in_flight = record is not None and record.state == JobState.DISPATCHED
    if in_flight and lane is not None and (lane.index, lane.attempt) == (job.index, job.attempt):
        return None
    return f"attempt {job.attempt} of item {job.index} of {job.job!r} is stale: its job has moved on"
