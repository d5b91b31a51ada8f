"""The orchestrator's side of ``for_each`` jobs: storing a fan-out's items, starting its lanes,
and each item's report (``runtime.engine.fanout`` decides, ``runtime.store.items`` stores).

An item's report costs the same whatever the number of items, lanes and jobs: one read of its lane
and the job's counters, then (for the report that moves the lane) the item's document, the lane's
next item and the lane itself, each one command, and one dispatch. The job's definition, input and
results do not change while it fans out, so they are read once per process (``FanOutContexts``).
Every write is safe to repeat: the item's document takes only its first success, a lane moves only
from the item and attempt it holds (and starts an item only while the run has no failure and the
job tolerates its failed items), a retry's attempt number is the one after the attempt that
failed, and the job's own end is a status with a unique key. A redelivered report whose effect is
recorded repeats what its first handling may not have finished: the dispatch of the lane's next
item, the job's end.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from runtime.clock import age, utcnow
from runtime.definition.model import Job
from runtime.documents.events import JobEvent
from runtime.documents.items import (
    NOT_STARTED,
    Lane,
    LaneView,
    lane_holds,
    lane_may_start,
    lane_of,
    lane_settles,
    lane_unstarted,
    lane_waits,
)
from runtime.documents.run import Run, StatusEvent
from runtime.engine.fanout import (
    FanOutStart,
    item_verdict,
    job_end,
    most_failed,
    next_lane,
    retry_due,
    stopped_lane,
    stops,
)
from runtime.engine.joins import job_event
from runtime.ports import ItemStore, RunStore
from runtime.statuses import ItemState, JobState, RunState, StatusName

log = logging.getLogger(__name__)

CACHED_FAN_OUTS = 256
"""Fan-outs whose context one process keeps (the least recently used go first)."""

DECISIONS = 3
"""How many times one report is decided: again when its move was refused because the job or the
run began failing meanwhile (then it starts nothing, and its move can only lose to a duplicate)."""


@dataclass(frozen=True, kw_only=True)
class FanOutContext:
    """What every item of one fan-out shares and never changes while it runs."""

    workflow: str
    job: Job
    base: JobEvent
    """The event of each item, but for its attempt, index and item."""
    round: int
    """The job's attempt when this was read: a redrive starts the fan-out again in the next
    one, maybe on another definition and versions (``redrive --upgrade``)."""


class FanOutContexts:
    """Per process, as Lambda keeps a warm container's state: one read of the run per fan-out."""

    def __init__(self, size: int = CACHED_FAN_OUTS) -> None:
        self._contexts: OrderedDict[tuple[str, str], FanOutContext] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(
        self, store: RunStore, run_id: str, job: str, round_number: int | None = None
    ) -> FanOutContext | None:
        """The fan-out's context; read again when the one kept is of another round."""
        with self._lock:
            kept = self._contexts.get((run_id, job))
            if kept is not None and round_number in (None, kept.round):
                self._contexts.move_to_end((run_id, job))
                return kept
        run = store.read_run(run_id)
        if run is None or job not in run.jobs:
            return None
        definition = run.definition.job(job)
        if definition.for_each is None:
            return None
        context = FanOutContext(
            workflow=run.workflow,
            job=definition,
            base=job_event(run, definition, 1),
            round=run.jobs[job].attempt,
        )
        with self._lock:
            self._contexts[(run_id, job)] = context
            while len(self._contexts) > self._size:
                self._contexts.popitem(last=False)
        return context


@dataclass
class ItemHandling:
    store: RunStore
    dispatch: Callable[[JobEvent], None]
    contexts: FanOutContexts
    redispatch_after: timedelta

    @property
    def items(self) -> ItemStore:
        return self.store.items()

    # -- a fan-out's start -------------------------------------------------------------------

    def store_items(self, run: Run, starts: tuple[FanOutStart, ...]) -> None:
        """Before the write that starts them: a lane started after it finds its items."""
        for start in starts:
            self.items.insert_items(run.run_id, start.job, start.items, workflow=run.workflow)

    def start_lanes(self, run: Run, starts: tuple[FanOutStart, ...], key: str) -> tuple[JobEvent, ...]:
        """After the write that starts them: put each lane's first item in and dispatch it."""
        dispatched: list[JobEvent] = []
        for start in starts:
            context = self.contexts.get(self.store, run.run_id, start.job, start.round)
            if context is None:
                continue
            for lane in range(min(len(start.items), start.concurrency)):
                dispatched += self._start_lane(context, run.run_id, start.round, lane, key)
        return tuple(dispatched)

    def _start_lane(
        self, context: FanOutContext, run_id: str, round_number: int, lane: int, key: str
    ) -> list[JobEvent]:
        job = context.job
        view = self.items.read_lane(run_id, job.name, lane)
        if view is None or not view.running or view.lane is not None:
            return []
        # The lane's first item that has not succeeded (after a redrive, some have); none when
        # the run's failure handlers run (a lane a crash left out, started by the replay).
        after = lane - job.max_concurrency
        claimed = None
        if view.failing:
            to, not_started = stopped_lane(after, view.fan_out)
            counts = {NOT_STARTED: not_started}
        else:
            claimed = self.items.claim_next(run_id, job.name, after, job.max_concurrency, view.fan_out.count)
            found = None if claimed is None else (claimed.index, claimed.attempt)
            to, skipped = next_lane(after, found, view.fan_out, key, utcnow())
            counts = {"done": skipped}
        unstarted = lane_unstarted(job.name, round_number, lane)
        if claimed is not None:
            unstarted |= lane_may_start(job.name, most_failed(job, view.fan_out, 0))
        moved = self.items.move_lane(run_id, job.name, lane, unstarted, to, counts)
        if moved is None:
            return []
        sent = [] if claimed is None else [self._send(context, run_id, to, claimed.value)]
        self._end_job(context, run_id, moved, None)
        return sent

    def replay(self, run: Run, key: str, now: datetime) -> tuple[JobEvent, ...]:
        """Repeat what the handling of event ``key`` may not have finished for the fan-outs it
        started: the lanes it did not start, the dispatches it may not have made."""
        if run.state != RunState.RUNNING:
            return ()
        dispatched: list[JobEvent] = []
        for name, record in run.jobs.items():
            fan_out = record.fan_out
            if fan_out is None or record.state != JobState.DISPATCHED or record.caused_by != key:
                continue
            context = self.contexts.get(self.store, run.run_id, name, record.attempt)
            if context is None:
                continue
            for number in range(fan_out.lane_count):
                lane = fan_out.lanes.get(number)
                if lane is None:
                    dispatched += self._start_lane(context, run.run_id, record.attempt, number, key)
                elif self._due(lane, key, now):
                    dispatched.append(self._resend(context, run.run_id, lane))
        return tuple(dispatched)

    def resend_lost(
        self,
        run: Run,
        reported: set[tuple[str, int, int]],
        now: datetime,
        lost_after: Callable[[Job], timedelta],
    ) -> tuple[JobEvent, ...]:
        """The reconciler's repair of the fan-outs: dispatch again every item a lane has held for
        ``lost_after(job)`` whose attempt has reported nothing at all (``reported``: job, index,
        attempt), its invocation lost. Each resend is claimed first by stamping the lane's
        ``claimedAt`` anew while it still holds that attempt, so two reconcilers never both send
        it and the next pass waits as long again; the job wrapper's lease makes a late duplicate
        of the lost invocation harmless."""
        if run.state != RunState.RUNNING:
            return ()
        sent: list[JobEvent] = []
        for name, record in run.jobs.items():
            fan_out = record.fan_out
            if fan_out is None or record.state != JobState.DISPATCHED:
                continue
            context = self.contexts.get(self.store, run.run_id, name, record.attempt)
            if context is None:
                continue
            for number, lane in sorted(fan_out.lanes.items()):
                if (
                    lane.index is None
                    or lane.waiting
                    or lane.claimed_at is None
                    or (name, lane.index, lane.attempt) in reported
                    or age(lane.claimed_at, now) < lost_after(context.job)
                ):
                    continue
                claimed = replace(lane, claimed_at=now)
                holds = lane_holds(name, number, lane.index, lane.attempt)
                if self.items.move_lane(run.run_id, name, number, holds, claimed, {}) is not None:
                    sent.append(self._resend(context, run.run_id, claimed))
        return tuple(sent)

    # -- an item's report --------------------------------------------------------------------

    def apply(self, event: StatusEvent) -> tuple[str, tuple[JobEvent, ...], str]:
        """One item's ``success`` or ``failed``: (action, dispatched, reason)."""
        assert event.job is not None
        assert event.index is not None
        context = self.contexts.get(self.store, event.run_id, event.job)
        if context is None:
            return "dropped", (), f"run {event.run_id!r} has no for_each job {event.job!r}"
        lane = lane_of(event.index, context.job.max_concurrency)
        for _ in range(DECISIONS):
            view = self.items.read_lane(event.run_id, context.job.name, lane)
            if view is None:
                return "ignored", (), f"job {context.job.name!r} is not fanning out"
            if view.round != context.round:
                context = self.contexts.get(self.store, event.run_id, event.job, view.round) or context
            if event.status == StatusName.TIMER_FIRED:
                outcome = self._retry_due(context, event, lane, view, utcnow())
            else:
                outcome = self._apply(context, event, lane, view, utcnow())
            if outcome is not None:
                return outcome
        return "ignored", (), "another handling moved the lane first"

    def _apply(
        self, context: FanOutContext, event: StatusEvent, lane: int, view: LaneView, now: datetime
    ) -> tuple[str, tuple[JobEvent, ...], str] | None:
        """The report applied to ``view``; None when a move that would start an item was refused
        while the lane still holds the item: the job or the run began failing, decide again."""
        assert event.index is not None
        job = context.job
        succeeded = event.status == StatusName.SUCCESS
        failed = 0 if succeeded else 1
        # No retry once the job has failed or while the failure handlers run.
        verdict = item_verdict(event, job, view.running, view.lane, stops(job, view.fan_out, view.failing, 0))
        if not view.running:
            return self._settle(context, event, lane, view, ran=True)
        if verdict == "stale":
            # A duplicate, or a redelivery after a crash: finish what the first handling began.
            due = view.running and self._due(view.lane, event.key, now)
            again = (self._resend(context, event.run_id, view.lane),) if due else ()
            ended = self._end_job(context, event.run_id, view, None)
            action = "advanced" if again or ended else "ignored"
            return action, again, "" if again or ended else "stale item report"
        if verdict == "retry":
            sent = self._attempt_again(context, event, lane, view, now, within_budget=True)
            if sent is None:
                return self._refused(event, lane)
            if isinstance(sent, str):
                return "recorded", (), sent
            if not sent:
                return "ignored", (), f"item {event.index} of {job.name!r} is not stored"
            return "advanced", sent, ""
        self._end_item(event)
        holds = lane_holds(job.name, lane, event.index, event.attempt)
        claimed = None
        # This failure fails the job, or the run is failing: the lane starts nothing more.
        if stops(job, view.fan_out, view.failing, failed):
            to, not_started = stopped_lane(event.index, view.fan_out)
            counts = {"done": 1 - failed, "failed": failed, NOT_STARTED: not_started}
        else:
            claimed = self.items.claim_next(
                event.run_id, job.name, event.index, job.max_concurrency, view.fan_out.count
            )
            found = None if claimed is None else (claimed.index, claimed.attempt)
            to, skipped = next_lane(event.index, found, view.fan_out, event.key, now)
            counts = {"done": skipped + 1 - failed, "failed": failed}
        if claimed is not None:
            holds |= lane_may_start(job.name, most_failed(job, view.fan_out, failed))
        moved = self.items.move_lane(event.run_id, job.name, lane, holds, to, counts)
        if moved is None:
            return self._refused(event, lane)
        sent = () if claimed is None else (self._send(context, event.run_id, to, claimed.value),)
        self._end_job(context, event.run_id, moved, None if succeeded else event.error)
        return "advanced" if sent else "recorded", sent, ""

    def _retry_due(
        self, context: FanOutContext, event: StatusEvent, lane: int, view: LaneView, now: datetime
    ) -> tuple[str, tuple[JobEvent, ...], str] | None:
        """An item's retry delay is over (its lane's timer fired): the lane dispatches the attempt
        it holds, guarded as every start of an item is; once the job stops (it failed, or the
        failure handlers run) the retry never starts and the item counts failed. None: decide
        again (the move was refused while the lane still holds the item)."""
        assert event.index is not None
        job = context.job
        held = view.lane
        if held is None or not held.holds(event.index, event.attempt) or not held.waiting:
            due = view.running and self._due(held, event.key, now)
            again = (self._resend(context, event.run_id, held),) if due else ()
            return ("advanced", again, "") if again else ("ignored", (), "stale retry timer")
        if not view.running or stops(job, view.fan_out, view.failing, 0):
            return self._give_up(context, event, lane, view)
        to = replace(held, due_at=None, caused_by=event.key, claimed_at=now)
        guard = (
            lane_holds(job.name, lane, event.index, event.attempt)
            | lane_waits(job.name, lane)
            | lane_may_start(job.name, most_failed(job, view.fan_out, 0))
        )
        if self.items.move_lane(event.run_id, job.name, lane, guard, to, {}) is None:
            return self._refused(event, lane)
        value = self.items.read_item(event.run_id, job.name, event.index)
        return "advanced", (self._send(context, event.run_id, to, value),), ""

    def _give_up(
        self, context: FanOutContext, event: StatusEvent, lane: int, view: LaneView
    ) -> tuple[str, tuple[JobEvent, ...], str] | None:
        """The retry a lane waits for will not start (the job stopped, or no longer fans out): the
        item counts failed and its lane empties, as if the retry had failed, with the error of the
        attempt that failed (one point read, on this rare path) and why no retry followed."""
        assert event.index is not None
        failed = replace(event, status=StatusName.FAILED, error=self._given_up_error(context, event))
        if view.running:
            return self._apply(context, failed, lane, view, utcnow())
        return self._settle(context, failed, lane, view, ran=True)

    def _given_up_error(self, context: FanOutContext, event: StatusEvent) -> str:
        stopped = f"its retry, attempt {event.attempt}, was not started: the job stopped"
        before = event.attempt - 1
        report = None
        if before >= 1:
            report = self.store.read_terminal_status(
                event.run_id, context.job.phase, context.job.name, before, event.index
            )
        if report is None or not report.error:
            return stopped
        return f"{report.error} (attempt {before}; {stopped})"

    def settle_refused(self, event: StatusEvent) -> None:
        """The wrapper refused an item's attempt (``not_run``) once its job no longer fans out (it
        failed, or the run ended): the attempt never ran, so the item counts as not started, and
        its lane empties (``_settle``)."""
        assert event.job is not None
        assert event.index is not None
        context = self.contexts.get(self.store, event.run_id, event.job)
        if context is None:
            return
        lane = lane_of(event.index, context.job.max_concurrency)
        view = self.items.read_lane(event.run_id, context.job.name, lane)
        if view is not None and not view.running:
            self._settle(context, event, lane, view, ran=False)

    def settle_waiting(self, run: Run) -> None:
        """Once ``run`` has ended (or a fan-out job has), the lanes left waiting out a retry delay
        settle: no timer of an ended run fires, so nothing else would count their items."""
        for name, record in run.jobs.items():
            fan_out = record.fan_out
            if fan_out is None:
                continue
            for number, held in fan_out.lanes.items():
                if not held.waiting or held.index is None:
                    continue
                view = self.items.read_lane(run.run_id, name, number)
                context = self.contexts.get(self.store, run.run_id, name)
                if view is None or view.running or context is None:
                    continue
                timer = StatusEvent(
                    run_id=run.run_id,
                    workflow=run.workflow,
                    status=StatusName.TIMER_FIRED,
                    phase=context.job.phase,
                    job=name,
                    attempt=held.attempt,
                    index=held.index,
                )
                self._give_up(context, timer, number, view)

    def _settle(
        self, context: FanOutContext, event: StatusEvent, lane: int, view: LaneView, *, ran: bool
    ) -> tuple[str, tuple[JobEvent, ...], str]:
        """The end of an item in flight once its job no longer fans out (the job failed, or the
        run ended): counted done or failed (not started when its attempt never ran), its lane
        emptied and the lane's items after it counted not started, so the counters of an ended
        job add up and show no item running. Its success is kept, so a redrive does not run it
        again; nothing starts."""
        assert event.index is not None
        if view.lane is None or not view.lane.holds(event.index, event.attempt):
            return "ignored", (), "stale item report"
        if ran:
            self._end_item(event)
        succeeded = ran and event.status == StatusName.SUCCESS
        to, after = stopped_lane(event.index, view.fan_out)
        counts = {
            "done": int(succeeded),
            "failed": int(ran and not succeeded),
            NOT_STARTED: after + int(not ran),
        }
        guard = lane_settles(context.job.name, lane, event.index, event.attempt)
        if self.items.move_lane(event.run_id, context.job.name, lane, guard, to, counts) is None:
            return "ignored", (), "another handling settled the lane first"
        return "recorded", (), ""

    def _refused(self, event: StatusEvent, lane: int) -> tuple[str, tuple[JobEvent, ...], str] | None:
        """A guarded move matched nothing: decide again (None) if the lane still holds the item at
        that attempt (the job or the run began failing meanwhile), else another handling moved it."""
        assert event.job is not None
        view = self.items.read_lane(event.run_id, event.job, lane)
        if (
            view is not None
            and view.running
            and view.lane is not None
            and view.lane.holds(event.index, event.attempt)
        ):
            return None
        return "ignored", (), "another handling moved the lane first"

    def not_run(self, event: StatusEvent) -> tuple[JobEvent, ...] | None:
        """The job wrapper refused an item's attempt (``not_run``: it read the run as ended, and
        the run has been redriven since): while the lane still holds that attempt, the item gets
        its next attempt at once, without using its retry budget. None: the fan-out is not
        running (the run has ended), which the engine records on the job for a redrive."""
        assert event.job is not None
        assert event.index is not None
        context = self.contexts.get(self.store, event.run_id, event.job)
        if context is None:
            return ()
        job = context.job
        lane = lane_of(event.index, job.max_concurrency)
        view = self.items.read_lane(event.run_id, job.name, lane)
        if view is None or not view.running:
            return None
        if view.lane is None or not view.lane.holds(event.index, event.attempt):
            return ()
        if view.round != context.round:
            context = self.contexts.get(self.store, event.run_id, event.job, view.round) or context
            job = context.job
        if stops(job, view.fan_out, view.failing, 0):
            # The job is stopping (its run's failure handlers run): the refused attempt counts as
            # the item's failure, which starts nothing, so the fan-out can end.
            refused = replace(event, status=StatusName.FAILED, error=event.error or "not run")
            return self.apply(refused)[1]
        sent = self._attempt_again(context, event, lane, view, utcnow(), within_budget=False)
        return sent if isinstance(sent, tuple) else ()

    def _attempt_again(
        self,
        context: FanOutContext,
        event: StatusEvent,
        lane: int,
        view: LaneView,
        now: datetime,
        *,
        within_budget: bool,
    ) -> tuple[JobEvent, ...] | str | None:
        """The item's next attempt (a retry, or outside the retry budget in place of one that
        never ran), dispatched once the lane holds it, guarded as every start of an item is: the
        event sent, () when the item is not stored, None when the guarded move was refused. A
        retry under a policy with a delay is not dispatched: the lane waits for its timer, and
        this says until when."""
        assert event.index is not None
        assert view.lane is not None
        job = context.job
        claimed = self.items.claim_again(event.run_id, job.name, event.index, event.attempt + 1)
        if claimed is None:
            return ()
        spared = 0 if within_budget else claimed.attempt - event.attempt
        to = replace(
            view.lane,
            attempt=claimed.attempt,
            first_attempt=view.lane.first_attempt + spared,
            caused_by=event.key,
            claimed_at=now,
        )
        guard = lane_holds(job.name, lane, event.index, event.attempt) | lane_may_start(
            job.name, most_failed(job, view.fan_out, 0)
        )
        due = retry_due(event.run_id, job, event, view.lane, now) if within_budget else None
        if due is not None:
            # The retry waits out its delay: the run's timer sweep fires it (``_retry_due``).
            to = replace(to, due_at=due)
        if self.items.move_lane(event.run_id, job.name, lane, guard, to, {}) is None:
            return None
        if due is not None:
            return f"item {event.index} of {job.name!r} retries at {due.isoformat()}"
        return (self._send(context, event.run_id, to, claimed.value),)

    # -- helpers --------------------------------------------------------------------------------

    def _end_item(self, event: StatusEvent) -> None:
        assert event.job is not None
        assert event.index is not None
        succeeded = event.status == StatusName.SUCCESS
        self.items.end_item(
            event.run_id,
            event.job,
            event.index,
            ItemState.SUCCEEDED if succeeded else ItemState.FAILED,
            event.output if succeeded else None,
            event.output_ref,
            None if succeeded else event.error,
        )

    def _end_job(self, context: FanOutContext, run_id: str, view: LaneView, error: str | None) -> bool:
        """Record the job's own end once its counters call for it (a repeat is refused by the
        status's unique key, so the job ends once)."""
        if not view.running:
            return False
        end = job_end(run_id, context.workflow, context.job, view.round, view.fan_out, error)
        return end is not None and self.store.record_status(end)

    def _due(self, lane: Lane | None, key: str, now: datetime) -> bool:
        """Whether the handling of ``key`` put the lane's item in and may not have dispatched it."""
        return (
            lane is not None
            and lane.index is not None
            and lane.due_at is None
            and lane.caused_by == key
            and (lane.claimed_at is None or age(lane.claimed_at, now) >= self.redispatch_after)
        )

    def _resend(self, context: FanOutContext, run_id: str, lane: Lane | None) -> JobEvent:
        assert lane is not None
        assert lane.index is not None
        return self._send(context, run_id, lane, self.items.read_item(run_id, context.job.name, lane.index))

    def _send(self, context: FanOutContext, run_id: str, lane: Lane, value: object) -> JobEvent:
        assert lane.index is not None
        event = replace(context.base, attempt=lane.attempt, index=lane.index, item=value)
        self.dispatch(event)
        return event
