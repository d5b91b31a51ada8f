"""The reconciler: no run waits forever because an event was lost.

The ``statuses`` collection is a run's truth and the run document a view of it that the
orchestrator keeps. Every hop between them can lose an event for good: Atlas suspends a trigger
on errors (resuming does not replay what it missed), an EventBridge rule gives up into the
dead-letter queue, a run is started against a database nobody is watching, the local runner is
stopped mid-run. So the reconciler, from time to time, takes the running runs that have not
been written for ``stale_after`` (and the runs with a cancel or redrive request that has not
been applied) and repairs each from its statuses:

- every status the run document does not show yet (``unrecorded_statuses``) goes through the
  orchestrator's own decisions (``Orchestrator.apply``), oldest first; the event keys make that
  idempotent, so racing the orchestrator on the same run applies each status once;
- a run whose ``workflow_started`` was never recorded (its starter died between its two writes)
  gets it;
- an attempt dispatched long enough ago that it should have reported ``started`` (its timeout
  plus Lambda's asynchronous retry window) but has not (``lost_attempts``; for a fan-out's items,
  ``ItemHandling.resend_lost`` over its lanes) is dispatched again with the same attempt number;
  the job wrapper's claim makes a late duplicate harmless. The redispatch is claimed first by a
  conditional write on the run, so two reconcilers never both send it, and the next pass waits
  as long again before trying once more.

Standard library and the ports only: it runs in the ``<workflow>-reconciler`` Lambda function.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from runtime.clock import age, utcnow
from runtime.definition.model import Job
from runtime.documents.events import JobEvent
from runtime.documents.run import Fields, Run, StatusEvent, job_changed, job_is, run_is
from runtime.engine import joins
from runtime.engine.callbacks import accepts_completion, awaits_callback, heartbeat_due, timer_slot
from runtime.engine.transition import Transition
from runtime.limits import LAMBDA_RETRY_DELAY
from runtime.ports import ChildStarter, Dispatcher, RunStore
from runtime.service import children, job_limits, run_slots
from runtime.service.orchestrator import Orchestrator
from runtime.statuses import (
    ANSWER_STATUSES,
    CALLBACK_STATUSES,
    EVENT_STATUSES,
    IN_FLIGHT,
    REDRIVABLE,
    JobState,
    RunState,
    StatusName,
)

log = logging.getLogger(__name__)

ASYNC_RETRY_WINDOW = timedelta(minutes=3)
"""Lambda retries an asynchronous invocation whose function failed about one minute and then two
minutes later: an attempt that has not reported ``started`` within its timeout plus this window
was never run."""

OPERATIONS_LOOKBACK = timedelta(days=1)
"""How far back a pass looks for cancel and redrive requests that were never applied."""

RUNS_PER_PASS = 1000
"""Stale runs one pass repairs at most (the longest idle first): a pass must end well inside the
function's timeout; the next pass takes the rest."""

LOGGED_RUNS = 20
"""Repaired run ids a pass names in its log line; the metrics record lists them all."""

APPLIED_ACTIONS = frozenset({"advanced", "recorded"})
"""Orchestrator outcomes that wrote something to the run."""


def default_lost_invocation_after(job: Job) -> timedelta:
    """The job's timeout plus Lambda's asynchronous retry window."""
    return timedelta(seconds=job.timeout) + ASYNC_RETRY_WINDOW


@dataclass(frozen=True, kw_only=True)
class ReconcileReport:
    """What a pass (or the repair of one run) did."""

    runs_checked: int = 0
    statuses_applied: int = 0
    """Statuses the run document had not recorded whose application changed it."""
    redispatched: int = 0
    """Attempts whose invocation was lost, dispatched again."""
    repaired_runs: tuple[str, ...] = ()
    """Runs that any of the above changed."""
    started_recorded: int = 0
    """``workflow_started`` statuses recorded for runs that never got theirs."""
    slots_released: int = 0
    """Concurrency slots held by runs that had ended, given back (``run_slots.repair``)."""
    queued_started: int = 0
    """Queued runs started because a slot was free."""
    tickets_released: int = 0
    """Places of a job's limits held by attempts that had ended, given back (``job_limits.repair``)."""
    waiting_started: int = 0
    """Attempts waiting for a job's limits dispatched because a place was free."""

    def __add__(self, other: ReconcileReport) -> ReconcileReport:
        return ReconcileReport(
            runs_checked=self.runs_checked + other.runs_checked,
            statuses_applied=self.statuses_applied + other.statuses_applied,
            redispatched=self.redispatched + other.redispatched,
            repaired_runs=self.repaired_runs + other.repaired_runs,
            started_recorded=self.started_recorded + other.started_recorded,
            slots_released=self.slots_released + other.slots_released,
            queued_started=self.queued_started + other.queued_started,
            tickets_released=self.tickets_released + other.tickets_released,
            waiting_started=self.waiting_started + other.waiting_started,
        )


def is_unrecorded(run: Run, event: StatusEvent) -> bool:
    """Whether the run document does not show ``event`` yet, so the orchestrator has to apply
    it: a job's end (or the job wrapper's ``not_run``) while that attempt is still dispatched,
    the start of a run nothing of which has started, a cancel of the round the run is running, a
    redrive into the round after the one that ended."""
    if event.status in (StatusName.SUCCESS, StatusName.FAILED, StatusName.NOT_RUN):
        record = run.jobs.get(event.job or "")
        if record is None or record.state != JobState.DISPATCHED:
            return False
        if event.index is not None:
            # An item's end while its lane still holds that attempt.
            return record.fan_out is not None and record.fan_out.holds(event.index, event.attempt)
        return record.attempt == event.attempt
    if event.status == StatusName.WORKFLOW_STARTED:
        return run.state == RunState.RUNNING and not_started(run)
    if event.status == StatusName.CANCEL_REQUESTED:
        return run.state in IN_FLIGHT and event.attempt == run.redrives
    if event.status == StatusName.REDRIVE_REQUESTED:
        return run.state in REDRIVABLE and event.attempt == run.redrives + 1
    callback = event.job is not None and event.job in run.jobs and run.definition.job(event.job).callback
    if callback and event.status in (*CALLBACK_STATUSES, StatusName.TIMER_FIRED):
        return callback_unrecorded(run, event)
    if event.status in (StatusName.TIMER_FIRED, *ANSWER_STATUSES, *EVENT_STATUSES):
        if event.job is None:
            # The deadline does nothing once the failure handlers have started (it started them,
            # or they run to their end).
            return (
                run.state == RunState.RUNNING
                and event.attempt == run.redrives
                and run.deadline is not None
                and run.failure is None
            )
        record = run.jobs.get(event.job)
        return record is not None and record.state == JobState.WAITING and record.attempt == event.attempt
    return False


def callback_unrecorded(run: Run, event: StatusEvent) -> bool:
    """A callback's completion while its attempt takes one, a heartbeat that would move the
    attempt's timer on, a timer of the due time the attempt waits until."""
    assert event.job is not None
    job, record = run.definition.job(event.job), run.jobs[event.job]
    if run.state != RunState.RUNNING:
        return False
    if event.status == StatusName.CALLBACK_COMPLETED:
        return accepts_completion(job, record, event.attempt)
    if record.attempt != event.attempt or record.state != JobState.WAITING:
        return False
    if event.status == StatusName.CALLBACK_HEARTBEAT:
        due = None if event.date is None else heartbeat_due(job, event, event.date)
        return (
            awaits_callback(job, record)
            and due is not None
            and (record.due_at is None or record.due_at < due)
        )
    if awaits_callback(job, record):
        return record.due_at is not None and event.slot == timer_slot(record.due_at)
    return True


def not_started(run: Run) -> bool:
    """Nothing of the run has happened yet: every job pending, no phase completed, never redriven."""
    return (
        run.redrives == 0
        and not run.completed_by
        and all(record.state == JobState.PENDING and record.attempt == 0 for record in run.jobs.values())
    )


def unrecorded_statuses(run: Run, statuses: Iterable[StatusEvent]) -> list[StatusEvent]:
    """The statuses of ``run`` its document does not show, in the order they were recorded."""
    return [event for event in statuses if is_unrecorded(run, event)]


def lost_attempts(
    run: Run, statuses: Sequence[StatusEvent], now: datetime, lost_after: Callable[[Job], timedelta]
) -> Transition | None:
    """Re-dispatch every attempt dispatched more than ``lost_after(job)`` ago that has reported
    nothing at all, and claim the re-dispatch by stamping the attempt's ``claimedAt`` anew, under
    the condition that it is still dispatched at that attempt. None: nothing was lost."""
    if run.state != RunState.RUNNING:
        return None
    reported = {(event.job, event.attempt) for event in statuses if event.job is not None}
    outputs = run.outputs
    conditions = run_is(RunState.RUNNING)
    changes: Fields = {}
    dispatches: list[JobEvent] = []
    for job in run.definition.jobs():
        record = run.jobs[job.name]
        if (
            record.state != JobState.DISPATCHED
            or job.for_each is not None  # its items are in flight, not the job
            or record.claimed_at is None
            or (job.name, record.attempt) in reported
            or age(record.claimed_at, now) < lost_after(job)
        ):
            continue
        conditions |= job_is(job.name, JobState.DISPATCHED, record.attempt)
        changes |= job_changed(job.name, claimed_at=now)
        dispatches.append(joins.job_event(run, job, record.attempt, outputs))
    if not dispatches:
        return None
    return Transition(conditions=conditions, changes=changes, dispatches=tuple(dispatches))


@dataclass
class Reconciler:
    """Repairs runs from their statuses (see the module's docstring)."""

    store: RunStore
    dispatcher: Dispatcher
    stale_after: timedelta
    """A running run not written for this long is checked."""
    lost_invocation_after: Callable[[Job], timedelta] | None = None
    """How long a dispatched attempt may go without reporting ``started`` before it is dispatched
    again; by default ``default_lost_invocation_after``."""
    workflow: str | None = None
    """Only runs of this workflow (a Lambda function may invoke its own workflow's jobs only);
    None: every workflow in the database (the dev server)."""
    on_rejected: Callable[[StatusEvent, str], None] = lambda status, reason: None
    """Told of each status found not authentic (``Orchestrator.on_rejected``)."""
    children: ChildStarter | None = None
    """Starts child runs again for the child workflow jobs whose start was lost
    (``Orchestrator.children``)."""
    _orchestrator: Orchestrator = field(init=False)

    def __post_init__(self) -> None:
        # A status applied here may be the one the orchestrator is applying right now: keep the
        # orchestrator's own rule that a redelivery repeats a dispatch only once Lambda's retry
        # delay has passed, so the race never dispatches an attempt twice.
        self._orchestrator = Orchestrator(
            store=self.store,
            dispatcher=self.dispatcher,
            redispatch_after=LAMBDA_RETRY_DELAY,
            on_rejected=self.on_rejected,
            children=self.children,
        )

    def invoke(self, job_event: JobEvent) -> None:
        """Invoke an attempt that may go now (its job's limits allow it), as the orchestrator does."""
        self._orchestrator.invoke(job_event)

    def reconcile_pass(self, now: datetime | None = None) -> ReconcileReport:
        """Check every stale running run and every run with an unapplied operation."""
        now = now or utcnow()
        cutoff = now - self.stale_after
        run_ids = list(self.store.stale_runs(cutoff, RUNS_PER_PASS, self.workflow))
        for operation in self.store.read_operations(now - OPERATIONS_LOOKBACK, self.workflow):
            if operation.run_id in run_ids or (
                operation.date is not None and age(operation.date, now) < self.stale_after
            ):
                continue
            run = self.store.read_run(operation.run_id)
            if run is not None and is_unrecorded(run, operation):
                run_ids.append(operation.run_id)
        report = ReconcileReport()
        for run_id in run_ids:
            report += self.reconcile_run(run_id, now)
        # After the runs: a run the statuses just ended has released its slot itself.
        slots = run_slots.repair(self.store, self.workflow)
        report += ReconcileReport(slots_released=slots.released, queued_started=slots.started)
        tickets = job_limits.repair(self.store, self.invoke, now, self.workflow)
        report += ReconcileReport(tickets_released=tickets.released, waiting_started=tickets.started)
        if report.repaired_runs:
            shown = ", ".join(report.repaired_runs[:LOGGED_RUNS])
            more = len(report.repaired_runs) - LOGGED_RUNS
            log.warning(
                "reconciler repaired %d of %d run(s) checked (%d statuses applied, %d attempts dispatched "
                "again): %s%s",
                len(report.repaired_runs),
                report.runs_checked,
                report.statuses_applied,
                report.redispatched,
                shown,
                f" and {more} more" if more > 0 else "",
            )
        return report

    def reconcile_run(self, run_id: str, now: datetime | None = None) -> ReconcileReport:
        """Repair one run from its statuses, whatever its age."""
        now = now or utcnow()
        run = self.store.read_run(run_id)
        if run is None:
            return ReconcileReport()
        statuses = self.store.read_statuses(run_id)
        # Only an authentic status says a run started or an attempt reported: a job's code may
        # insert any document, to make a lost attempt look started (docs/architecture.md, "Trust").
        keys = self.store.keys
        authentic = (
            statuses if keys is None else [event for event in statuses if event.rejection(keys) is None]
        )
        started_recorded = 0
        if run.state == RunState.RUNNING and not_started(run):
            start = StatusEvent(run_id=run_id, workflow=run.workflow, status=StatusName.WORKFLOW_STARTED)
            if not any(event.key == start.key for event in authentic):
                started_recorded = int(self.store.record_status(start))
                statuses, authentic = [*statuses, start], [*authentic, start]
        applied = 0
        for event in unrecorded_statuses(run, statuses):
            outcome = self._orchestrator.rejected(event) or self._orchestrator.apply(event)
            log.info("reconciler applied %s of run %r: %s", event.key, run_id, outcome.action)
            applied += outcome.action in APPLIED_ACTIONS
        # Lost attempts are looked for in the run as it was read with its statuses: what the
        # statuses just applied dispatched is new. Their write is conditional on each attempt
        # still being dispatched, so an attempt those changed is left to the next pass.
        redispatched = self._redispatch_lost(run, authentic, now)
        applied += self._children_ended(run)
        repaired = bool(applied or redispatched or started_recorded)
        return ReconcileReport(
            runs_checked=1,
            statuses_applied=applied,
            redispatched=redispatched,
            repaired_runs=(run_id,) if repaired else (),
            started_recorded=started_recorded,
        )

    def _children_ended(self, run: Run) -> int:
        """The ends of child runs whose report to this run was lost (their orchestrator crashed
        between recording the end and the report, and the end was never delivered again): each
        is reported now, and its status reaches the orchestrator like any other."""
        if run.state != RunState.RUNNING:
            return 0
        reported = 0
        for name in children.child_jobs(run.definition):
            record = run.jobs[name]
            if record.state == JobState.DISPATCHED:
                phase = run.definition.job(name).phase
                child = children.child_of(self.store, run.run_id, phase, name, record.attempt)
                reported += children.report_to_parent(self.store, child)
        return reported

    def _redispatch_lost(self, run: Run, statuses: Sequence[StatusEvent], now: datetime) -> int:
        lost_after = self.lost_invocation_after or default_lost_invocation_after
        reported = {
            (e.job, e.index, e.attempt) for e in statuses if e.job is not None and e.index is not None
        }
        items = self._orchestrator.fan_outs.resend_lost(run, reported, now, lost_after)
        for item in items:
            log.warning(
                "reconciler: attempt %d of item %s of %s in run %r never started; dispatched it again",
                item.attempt,
                item.index,
                item.job,
                run.run_id,
            )
        claim = lost_attempts(run, statuses, now, lost_after)
        if claim is None or not self.store.apply_transition(run.run_id, claim.conditions, claim.changes):
            return len(items)
        for job_event in claim.dispatches:
            log.warning(
                "reconciler: attempt %d of %s in run %r never started; dispatching it again",
                job_event.attempt,
                job_event.job,
                run.run_id,
            )
            self._orchestrator.dispatch(job_event)
        return len(items) + len(claim.dispatches)
