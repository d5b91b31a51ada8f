"""Lambda's timeout, for the attempts nobody stopped: an attempt that reported ``started`` and
nothing else for longer than its job's ``timeout`` would have been stopped by Lambda, and Lambda
would have told the job's on-failure destination. A job's worker process is stopped at its
timeout (``cdk_app.local.processes``), but a dev server stopped (Ctrl-C, a crash) while a job
ran, or job code run in the runner's own process (tests), would leave the run waiting forever.
The reconciler cannot tell: it re-dispatches attempts that never started, and this one did."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cdk_app.local.cloud import LocalCloud
from runtime.clock import age, utcnow
from runtime.definition.model import Job
from runtime.documents.events import JobEvent
from runtime.documents.run import Run
from runtime.engine.joins import job_event
from runtime.ports import RunStore
from runtime.statuses import JobState, RunState, StatusName

GRACE = timedelta(seconds=1)
"""Beyond the timeout, for the time between Lambda starting the function and the wrapper's
``started`` report."""
LOCAL_REQUEST_ID = "local-timeout"
"""The request id of the record when the claim carries none (a claim written before request ids)."""


@dataclass(frozen=True, kw_only=True)
class TimedOut:
    """An attempt Lambda would have stopped: what its on-failure record needs."""

    event: JobEvent
    request_id: str | None
    """The invocation that claimed the attempt (its ``started`` report)."""
    timeout: int


def attempts_in_flight(run: Run) -> list[tuple[Job, JobEvent, datetime | None]]:
    """Every attempt the run has in flight: each dispatched job's, and each item a fan-out's
    lanes hold (its item value left out: the watch reads it only for one that timed out), with
    when it was claimed (decided, or dispatched again having never started): it started after."""
    found: list[tuple[Job, JobEvent, datetime | None]] = []
    for phase in run.definition.all_phases():
        for job in phase.jobs:
            record = run.jobs.get(job.name)
            # A child workflow job's attempt runs no function: its child run has its own bounds.
            if record is None or record.state != JobState.DISPATCHED or job.child_workflow is not None:
                continue
            event = job_event(run, job, record.attempt)
            if record.fan_out is None:
                found.append((job, event, record.claimed_at))
                continue
            found += [
                (job, replace(event, attempt=lane.attempt, index=lane.index), lane.claimed_at)
                for lane in record.fan_out.lanes.values()
                if lane.index is not None and not lane.waiting
            ]
    return found


AttemptKey = tuple[str, int | None, int]
"""An attempt in flight: its job, item index and number."""


def _attempt_key(event: JobEvent) -> AttemptKey:
    return (event.job, event.index, event.attempt)


@dataclass
class StartBounds:
    """What a watch learnt of a run's attempts in flight, so it reads an attempt's ``started``
    only once it may have run past its timeout: a fan-out holds a hundred attempts in flight,
    and reading each one's at every look (once a second) cost the local run two commands per
    item. An attempt starts after its claim (``claimedAt``, checked before this is asked), and
    after a look that found it not started yet. One whose end was read is not read again: on a
    loaded machine the run document may show attempts in flight whose ends the orchestrator has
    not applied yet, for longer than their timeout."""

    earliest: dict[AttemptKey, datetime] = field(default_factory=dict)
    """The earliest each attempt in flight whose ``started`` was read may have started."""
    ended: set[AttemptKey] = field(default_factory=set)
    """The attempts still in flight in the run document whose terminal report was read."""

    def look(self, in_flight: list[tuple[Job, JobEvent]]) -> None:
        """Forget the attempts no longer in flight."""
        keys = {_attempt_key(event) for _, event in in_flight}
        self.earliest = {key: bound for key, bound in self.earliest.items() if key in keys}
        self.ended &= keys

    def may_have_timed_out(self, job: Job, event: JobEvent, now: datetime) -> bool:
        key = _attempt_key(event)
        bound = self.earliest.get(key)
        if key in self.ended:
            return False
        return bound is None or age(bound, now) > timedelta(seconds=job.timeout) + GRACE

    def started(self, event: JobEvent, date: datetime | None, now: datetime) -> None:
        """Its ``started`` was read: its date, or, when it has none yet, it starts after ``now``."""
        self.earliest[_attempt_key(event)] = date or now


def timed_out_attempts(
    store: RunStore, run: Run, now: datetime, bounds: StartBounds | None = None
) -> list[TimedOut]:
    """The run's attempts in flight whose ``started`` is older than their timeout (plus
    ``GRACE``) and that reported nothing after it: point reads of those attempts alone, so a
    check costs the same however many statuses the run has. Nothing is read of an attempt
    claimed less than its timeout ago, which cannot have started before (a fan-out's lanes may
    hold a hundred items that wait for their job's limits); with ``bounds``, nor of one that
    cannot have started that long ago, or whose end was read."""
    found = []
    in_flight = attempts_in_flight(run)
    if bounds is not None:
        bounds.look([(job, event) for job, event, _ in in_flight])
    for job, event, claimed_at in in_flight:
        if claimed_at is not None and age(claimed_at, now) <= timedelta(seconds=job.timeout) + GRACE:
            continue
        if bounds is not None and not bounds.may_have_timed_out(job, event, now):
            continue
        claim = store.read_status(
            run.run_id, job.phase, job.name, StatusName.STARTED, event.attempt, event.index
        )
        if bounds is not None:
            bounds.started(event, None if claim is None else claim.date, now)
        if claim is None or claim.date is None:
            continue
        if age(claim.date, now) <= timedelta(seconds=job.timeout) + GRACE:
            continue
        if store.read_terminal_status(run.run_id, job.phase, job.name, event.attempt, event.index):
            if bounds is not None:
                bounds.ended.add(_attempt_key(event))
            continue
        if event.index is not None:
            event = replace(event, item=store.items().read_item(run.run_id, job.name, event.index))
        found.append(TimedOut(event=event, request_id=claim.request_id, timeout=job.timeout))
    return found


class TimeoutWatch:
    """Tells the on-failure destination about each timed-out attempt, once."""

    def __init__(self, store: RunStore, cloud: LocalCloud, say: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.cloud = cloud
        self.say = say
        self._reported: set[tuple[str, str, int]] = set()
        """(run, job or job[index], attempt) of the timeouts reported."""
        self._bounds: dict[str, StartBounds] = {}
        """Of each running run looked at: when its attempts in flight may have started."""

    def check(self, run_id: str, now: datetime | None = None) -> int:
        """Report the run's timed-out attempts not reported before; how many there were."""
        now = now or utcnow()
        run = self.store.read_run(run_id)
        if run is None or run.state != RunState.RUNNING:
            self._bounds.pop(run_id, None)
            return 0
        reported = 0
        bounds = self._bounds.setdefault(run_id, StartBounds())
        for attempt in timed_out_attempts(self.store, run, now, bounds):
            event = attempt.event
            key = (event.run_id, f"{event.job}[{event.index}]", event.attempt)
            if key in self._reported:
                continue
            self._reported.add(key)
            reported += 1
            if self.say is not None:
                self.say(
                    f"{event.workflow}/{event.run_id}: {event.job} attempt {event.attempt} ran past its "
                    f"timeout of {attempt.timeout}s: reported as Lambda would"
                )
            self.cloud.job_timed_out(event, attempt.request_id or LOCAL_REQUEST_ID, attempt.timeout)
        return reported
