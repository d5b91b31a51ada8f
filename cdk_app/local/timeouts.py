"""Lambda's timeout, played by the dev server: an attempt that reported ``started`` and nothing
else for longer than its job's ``timeout`` would have been stopped by Lambda, and Lambda would
have told the job's on-failure destination. Locally nobody else does: a job thread stuck past
its timeout, or a dev server stopped (Ctrl-C, a crash) while a job ran, would leave the run
waiting forever. The reconciler cannot tell: it re-dispatches attempts that never started, and
this one did."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from runtime.documents import JobState, Run, StatusEvent, StatusName
from runtime.engine import age
from runtime.events import JobEvent

GRACE = timedelta(seconds=1)
"""Beyond the timeout, for the time between Lambda starting the function and the wrapper's
``started`` report."""


@dataclass(frozen=True, kw_only=True)
class TimedOut:
    """An attempt Lambda would have stopped: what its on-failure record needs."""

    event: JobEvent
    request_id: str | None
    """The invocation that claimed the attempt (its ``started`` report)."""
    timeout: int


def timed_out_attempts(run: Run, statuses: Sequence[StatusEvent], now: datetime) -> list[TimedOut]:
    """The run's dispatched attempts whose ``started`` is older than their timeout (plus
    ``GRACE``) and that reported nothing after it."""
    started: dict[tuple[str, int], StatusEvent] = {}
    ended: set[tuple[str, int]] = set()
    for status in statuses:
        if status.job is None:
            continue
        if status.status == StatusName.STARTED:
            started[(status.job, status.attempt)] = status
        elif status.status in (StatusName.SUCCESS, StatusName.FAILED):
            ended.add((status.job, status.attempt))
    found = []
    for phase in run.definition.phases:
        for job in phase.jobs:
            record = run.jobs.get(job.name)
            if record is None or record.state != JobState.DISPATCHED:
                continue
            key = (job.name, record.attempt)
            claim = started.get(key)
            if claim is None or claim.date is None or key in ended:
                continue
            if age(claim.date, now) <= timedelta(seconds=job.timeout) + GRACE:
                continue
            event = JobEvent(
                run_id=run.run_id,
                workflow=run.workflow,
                phase=phase.name,
                job=job.name,
                attempt=record.attempt,
                input=run.input,
                results={name: run.outputs.get(name) for name in job.after},
            )
            found.append(TimedOut(event=event, request_id=claim.request_id, timeout=job.timeout))
    return found
