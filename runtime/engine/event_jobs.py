"""Event jobs, decided: an attempt that waits for an event (``event_awaited``), whether an
event's payload is the one it waits for (its ``match``), and which jobs of a run wait for an event
of a name now. The decisions on the event arriving and on the wait timing out are in
``runtime.engine.timers``, beside the approval's, whose shape they share.

Exactly once per waiting attempt: the event delivered is the attempt's ``event_received`` status,
and the unique key of ``statuses`` holds one per attempt, whoever inserts it (the sender, or the
orchestrator delivering an event kept from before the wait) and however often.

Pure, like the rest of the engine.
"""

from __future__ import annotations

from typing import Any

import jmespath

from runtime.definition.model import Job
from runtime.documents.run import Run, StatusEvent
from runtime.engine.joins import approval_requested, callback_awaited, condition_results
from runtime.statuses import JobState, RunState, StatusName

EVENT_TIMED_OUT = "event timed out"


def event_awaited(run: Run, job: Job, attempt: int) -> StatusEvent:
    """The record that the event job's ``attempt`` waits: the orchestrator, applying it, delivers
    an event sent before the wait began (``runtime.service.events``)."""
    return StatusEvent(
        run_id=run.run_id,
        workflow=run.workflow,
        status=StatusName.EVENT_AWAITED,
        phase=job.phase,
        job=job.name,
        attempt=attempt,
        reason=None if job.event is None else job.event.name,
    )


def wait_began(run: Run, job: Job, attempt: int) -> StatusEvent | None:
    """The record an attempt writes as it begins to wait for someone: an approval's answer, an
    event, or a callback job's token completed (``approval_requested``, ``event_awaited``,
    ``callback_awaited``); None for a ``wait`` of time alone and for a job whose code runs."""
    if job.approval is not None:
        return approval_requested(run, job, attempt)
    if job.event is not None:
        return event_awaited(run, job, attempt)
    if job.callback is not None and not job.callback.runs_code:
        return callback_awaited(run, job, attempt)
    return None


def event_received(run: Run, job: Job, attempt: int, event_id: str, payload: Any) -> StatusEvent:
    """The event ``event_id`` delivered to the event job's waiting ``attempt``."""
    return StatusEvent(
        run_id=run.run_id,
        workflow=run.workflow,
        status=StatusName.EVENT_RECEIVED,
        phase=job.phase,
        job=job.name,
        attempt=attempt,
        output=payload,
        request_id=event_id,
    )


def matches(run: Run, job: Job, payload: Any) -> bool:
    """Whether ``payload`` makes the job's ``match`` true (over ``{input, results, event}``; no
    ``match``: any payload). An expression that cannot be evaluated on this payload (a function
    given the wrong type) is no match: the event is for another waiting job, or none."""
    if job.event is None:
        return False
    if job.event.match is None:
        return True
    scope = {
        "input": run.input,
        "results": condition_results(run, job, run.outputs),
        "event": payload,
    }
    try:
        return bool(jmespath.search(job.event.match, scope))
    except Exception:  # JMESPath raises more than its own errors for a value of the wrong type
        return False


def waiting_for(run: Run, name: str) -> list[tuple[Job, int]]:
    """The event jobs of the running ``run`` that wait for an event ``name`` now, with the attempt
    that waits."""
    if run.state != RunState.RUNNING:
        return []
    return [
        (job, record.attempt)
        for job in run.definition.jobs()
        if job.event is not None
        and job.event.name == name
        and (record := run.jobs[job.name]).state == JobState.WAITING
    ]
