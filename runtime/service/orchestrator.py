"""Applying one status event to its run: the use case behind the orchestrator function, the
reconciler and the local cloud. One event in, one decision of the engine, the write it was
decided under, then what it causes (dispatches, run statuses).

Delivery is at least once and unordered at every hop, and a handler may crash at any line. So
every write to a run is conditional on what the handler read: a completion and everything that
follows from it go in one write guarded by the run's version, or, when another handler wrote
first, the completion is recorded atomically and what follows is claimed by a second conditional
write. A redelivered event that finds its completion already recorded decides again from the
stored state and repeats what its first handling may not have finished (dispatches, run
statuses), which the job wrapper and the unique status index make harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from runtime import limits
from runtime.aws.logs import log_context
from runtime.aws.telemetry import observe_decision
from runtime.clock import utcnow
from runtime.documents.callbacks import callback_token
from runtime.documents.envelopes import (
    as_mapping,
    handed_off_id,
    is_failure_record,
    parse_failure_record,
    parse_status_event,
)
from runtime.documents.events import JobEvent
from runtime.documents.leases import lease_id
from runtime.documents.run import Run, StatusEvent, jobs_invoked, status_rejected, wake_at
from runtime.documents.signatures import is_attempt_key
from runtime.engine.attempts import attempt_failed, plan_give_up
from runtime.engine.decide import decide, refused_write
from runtime.engine.fanout import Unreadable
from runtime.engine.replay import replay
from runtime.engine.transition import Expiry, LoadOutputs, Rejection, Transition
from runtime.errors import DocumentRejected, EventError, OutputTooLarge
from runtime.limits import LAMBDA_RETRY_DELAY
from runtime.ports import ChildStarter, Dispatcher, InvocationRefused, RunStore
from runtime.service import children, job_limits, run_slots
from runtime.service.events import deliver_kept
from runtime.service.fan_out import FanOutContexts, ItemHandling
from runtime.statuses import (
    ENDED,
    ORCHESTRATOR_STATUSES,
    RUN_ENDS,
    TERMINAL_JOB_STATUSES,
    RunState,
    StatusName,
)

log = logging.getLogger(__name__)


MAX_DECISIONS = 100
"""Bound on re-reading after losing a conditional write to a concurrent handler; each loss means
another handler made progress, so reaching it means something else is wrong."""


DISPATCH_BATCH = 200
"""A decision that dispatches more jobs than this records, batch by batch, which invocations
Lambda accepted, so a redelivery after a timeout does not start them all again. Smaller
decisions (the hot path) write nothing more."""


def unreadable_reason(job: str, exc: OutputTooLarge, loaded: int) -> str:
    """Why an expression cannot read ``job``'s output, with ``loaded`` bytes of other outputs
    loaded for the same decision."""
    reason = (
        f"it reads the output of {job!r}, {exc.shown_size} bytes of JSON; a when or for_each may read "
        f"at most {limits.OUTPUT_READ_MAX_BYTES:,} bytes of outputs kept by reference"
    )
    if loaded:
        reason += f" ({loaded:,} of them already loaded for the other conditions of the same decision)"
    return reason + " (return a smaller summary for the condition to read, beside the large output)"


@dataclass(frozen=True)
class LostRace:
    """A decision's write that another handler's write beat: the run as it is once the
    completion alone was recorded (None: read it again), to decide on again."""

    run: Run | None


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What one handling did: for logs, tests and the local runner."""

    action: str
    dispatched: tuple[JobEvent, ...] = ()
    recorded: tuple[str, ...] = ()
    reason: str = ""


@dataclass
class Orchestrator:
    store: RunStore
    dispatcher: Dispatcher
    redispatch_after: timedelta = LAMBDA_RETRY_DELAY
    """How old a dispatch this event caused must be before a redelivery repeats it; drivers that
    redeliver a crashed handling at once (the local runner, tests) set zero."""
    dispatch_threads: int = 1
    """Invocations made at the same time; Lambda's handler sets ``DISPATCH_THREADS``."""
    contexts: FanOutContexts = field(default_factory=FanOutContexts)
    """What the items of each fan-out share, read once per process."""
    on_rejected: Callable[[StatusEvent, str], None] = lambda status, reason: None
    """Told of every status rejected as not authentic, once per status document (the Lambda
    handlers count them in a metric)."""
    on_decision: Callable[[Run, StatusEvent, Transition], None] = observe_decision
    """Told of every decision written, once (``runtime.aws.telemetry``: metrics and spans)."""
    workflow: str | None = None
    """The workflow whose statuses this orchestrator applies from hand-offs (the deployed
    function's own; the trigger's events reach it through its workflow's rule alone). None: any
    (the local cloud, tests)."""
    children: ChildStarter | None = None
    """Starts the child runs of child workflow jobs; None: none run here (such an attempt fails)."""

    @property
    def fan_outs(self) -> ItemHandling:
        return ItemHandling(self.store, self.dispatch, self.contexts, self.redispatch_after)

    def handle(self, event: object) -> Outcome:
        """Never raises for a malformed or stale event (it is logged and dropped); store and
        dispatch failures do raise, so Lambda retries the event. ``event`` is an Atlas trigger
        envelope, a Lambda on-failure record, or a job function's hand-off (``delivery: fast``):
        the id of a status it recorded, read here from MongoDB and applied exactly as the
        trigger's delivery of the same status, which is then a duplicate."""
        try:
            payload = as_mapping(event)
            if is_failure_record(payload):
                return self._handle_failure_record(payload)
            status_id = handed_off_id(payload)
            status = parse_status_event(payload) if status_id is None else self._handed_off(status_id)
        except EventError as exc:
            log.warning("dropped a malformed event: %s", exc)
            return Outcome(action="dropped", reason=str(exc))
        if isinstance(status, Outcome):
            return status
        if status.status not in ORCHESTRATOR_STATUSES:
            return Outcome(action="ignored", reason=f"the orchestrator does not act on '{status.status}'")
        rejected = self.rejected(status)
        if rejected is not None:
            return rejected
        with log_context(
            workflow=status.workflow, run_id=status.run_id, job=status.job, attempt=status.attempt or None
        ):
            return self.apply(status)

    def _handed_off(self, status_id: str) -> StatusEvent | Outcome:
        """The status a job function handed off, as recorded; why it is dropped when there is
        none by that id (a forged id, or one deleted since) or it is another workflow's."""
        status = self.store.read_status_by_id(status_id)
        if status is None:
            reason = f"no status {status_id!r}"
        elif self.workflow not in (None, status.workflow):
            reason = (
                f"status {status_id!r} of workflow {status.workflow!r} handed to the orchestrator of "
                f"{self.workflow!r}"
            )
        else:
            return status
        log.warning("dropped a hand-off: %s", reason)
        return Outcome(action="dropped", reason=reason)

    def rejected(self, status: StatusEvent) -> Outcome | None:
        """A status whose writer the control plane cannot vouch for (docs/architecture.md,
        "Trust"): recorded as rejected with the reason and counted, never applied. None when it is
        authentic, or when this orchestrator does not check signatures (a store without keys:
        the engine's own tests)."""
        keys = self.store.keys
        if keys is None:
            return None
        reason = status.rejection(keys)
        if reason is None:
            return None
        return self._reject(status, reason)

    def _reject(self, status: StatusEvent, reason: str) -> Outcome:
        if self.store.record_status(status_rejected(status, reason)):
            log.warning("rejected %s of run %r: %s", status.key, status.run_id, reason)
            self.on_rejected(status, reason)
        return Outcome(action="rejected", reason=reason)

    def apply(self, event: StatusEvent) -> Outcome:
        """Read the run, ask the engine, write what it decided under the conditions it decided
        on; when another handler wrote in between, read again and decide again. The reconciler
        feeds the statuses a run has missed through here too. A success is planned against the
        whole run (two round trips, one write); when that write loses, the completion alone is
        recorded atomically and the rest decided on what that write returns, which stays cheap
        however many completions race. An item's report of a ``for_each`` job moves only that
        job's lane (``runtime.service.fan_out``)."""
        if event.status == StatusName.EVENT_AWAITED:
            # Nothing to decide: the wait is recorded; an event kept from before it is delivered.
            delivered = deliver_kept(self.store, event)
            return Outcome(action="ignored" if delivered is None else "delivered")
        if event.index is not None:
            self._release_attempt(event)
        if event.index is not None and event.status != StatusName.NOT_RUN:
            action, dispatched, reason = self.fan_outs.apply(event)
            return Outcome(action=action, dispatched=dispatched, reason=reason)
        if event.index is not None:
            sent = self.fan_outs.not_run(event)
            if sent is not None:
                return Outcome(action="advanced" if sent else "ignored", dispatched=sent)
            # The fan-out is not running: the engine records its job for a redrive, then the
            # refused attempt counts as not started (after: the engine reads its lane holding it).
            outcome = self._decide(event)
            self.fan_outs.settle_refused(event)
            return outcome
        return self._decide(event)

    def _release_attempt(self, event: StatusEvent, run: Run | None = None) -> None:
        """An attempt of a job with limits across runs has ended: its place goes back and the
        attempts waiting for it move (before its end is applied: the end is in the statuses log
        already). Costs nothing for a job without limits: the definition is the fan-out's, read
        once per process, or ``run``, as the decision read it."""
        if event.job is None or event.status not in TERMINAL_JOB_STATUSES:
            return
        if event.index is not None:
            context = self.contexts.get(self.store, event.run_id, event.job)
            job, round_number = (None, 0) if context is None else (context.job, context.round)
        else:
            job = None if run is None or event.job not in run.jobs else run.definition.job(event.job)
            round_number = 0
        if job is not None and (job.concurrency is not None or job.rate_limit is not None):
            attempt = job_limits.Attempt(event.run_id, event.job, event.index, event.attempt, round_number)
            job_limits.release(self.store, attempt, job.concurrency is not None, self.invoke)

    def _decide(self, event: StatusEvent) -> Outcome:
        run = self.store.read_run(event.run_id)
        if event.index is None:
            self._release_attempt(event, run)
        recorded_now = False
        for _ in range(MAX_DECISIONS):
            if run is None:
                log.warning("dropped %s: unknown run %r", event.key, event.run_id)
                return Outcome(action="dropped", reason=f"unknown run {event.run_id!r}")
            if run.state == RunState.QUEUED:
                queued = self._queued(run, event)
                if queued is not None:
                    return queued
                run = self.store.read_run(event.run_id)  # it started meanwhile
                continue
            if event.status == StatusName.REDRIVE_REQUESTED and not run_slots.slot_for_redrive(
                self.store, run, event
            ):
                return Outcome(action="waiting", reason="every concurrency slot of the run's key is held")
            now = utcnow()
            decision = decide(run, event, now)
            if isinstance(decision, LoadOutputs):
                run = self._with_outputs(run, decision.references)
                continue
            written = self._write(run, event, decision, now) if isinstance(decision, Transition) else decision
            if isinstance(written, LostRace):
                # Another handler changed the run since we read it: decide again on what it is now.
                recorded_now = recorded_now or written.run is not None
                run = written.run or self.store.read_run(event.run_id)
                continue
            if isinstance(written, Rejection):
                return self._rejected(run, event, written)
            return self._finish(run, event, written, recorded_now)
        raise RuntimeError(f"no decision for {event.key} of run {event.run_id!r} after {MAX_DECISIONS} tries")

    def _with_outputs(self, run: Run, references: Mapping[str, str]) -> Run:
        """The run with the outputs kept by reference that a ``when`` or ``for_each`` reads, as
        far as they fit in ``limits.OUTPUT_READ_MAX_BYTES`` with those loaded before for the same
        decision: one that does not is never loaded, and stands as ``Unreadable`` with the sizes,
        which fails the expression that reads it (and the run) instead of this handler's memory."""
        loaded, used = dict(run.loaded_outputs), run.loaded_bytes
        for name, ref in references.items():
            try:
                loaded[name], size = self.store.items().outputs.load_within(
                    ref, limits.OUTPUT_READ_MAX_BYTES - used
                )
            except OutputTooLarge as exc:
                log.error("run %r: the output of %r is too large to read: %s", run.run_id, name, exc)
                loaded[name] = Unreadable(unreadable_reason(name, exc, used))
                continue
            used += size
        return replace(run, loaded_outputs=loaded, loaded_bytes=used)

    def _write(
        self, run: Run, event: StatusEvent, transition: Transition, now: datetime
    ) -> Transition | Rejection | LostRace:
        """Make the decision's write (a fan-out's items first): the transition written, or, when
        MongoDB refuses the document for good, the run's failure written in its place (never
        retried into a dead-letter queue), or ``LostRace`` when another handler wrote first."""
        self.fan_outs.store_items(run, transition.fan_outs)
        decision: Transition | Rejection = transition
        try:
            earliest = None if transition.wake_at is None else wake_at(transition.wake_at)
            written = self.store.apply_transition(
                run.run_id, transition.conditions, transition.changes, earliest
            )
        except DocumentRejected as exc:
            log.error("%s of run %r cannot be stored: %s", event.key, run.run_id, exc)
            decision = refused_write(
                run, event, f"MongoDB refused the write: {limits.bounded(str(exc))}", now
            )
            written = isinstance(decision, Rejection) or self.store.apply_transition(
                run.run_id, decision.conditions, decision.changes
            )
        if written:
            return decision
        assert isinstance(decision, Transition)
        return LostRace(run=self._record_completion(run.run_id, decision.fallback))

    def _queued(self, run: Run, event: StatusEvent) -> Outcome | None:
        """A queued run has not started: a cancel ends it without starting it, its start is
        finished when it holds its slot (None: it started meanwhile, decide again); nothing else
        applies to it yet."""
        if event.status == StatusName.WORKFLOW_STARTED and run_slots.resume_start(self.store, run):
            return None
        if event.status != StatusName.CANCEL_REQUESTED or event.attempt != run.redrives:
            return Outcome(action="ignored", reason="the run is queued for a concurrency slot")
        error = f"cancelled: {event.reason}" if event.reason else "cancelled"
        if not run_slots.end_queued(self.store, run, event.key, error):
            return None
        return Outcome(action="advanced", recorded=(RUN_ENDS[RunState.CANCELLED].value,))

    def _release_slot(self, run: Run, event: StatusEvent, recorded: tuple[StatusEvent, ...]) -> None:
        """A run of a workflow with ``concurrency`` that this event ended (or that had ended
        already: a redelivery, a late report; not a redrive, which took a slot to reopen it)
        gives its slot back; nothing for any other run (one without a concurrency key), so a
        job's report costs no more."""
        if run.concurrency_key is None:
            return
        ended = run.state in ENDED and event.status != StatusName.REDRIVE_REQUESTED
        if ended or any(status.status in RUN_ENDS.values() for status in recorded):
            run_slots.release(self.store, run)

    def _rejected(self, run: Run, event: StatusEvent, rejection: Rejection) -> Outcome:
        level = logging.WARNING if rejection.action == "dropped" else logging.INFO
        log.log(level, "%s %s of run %r: %s", rejection.action, event.key, run.run_id, rejection.reason)
        self._release_slot(run, event, ())
        self._expire_late_statuses(run, None)
        return Outcome(action=rejection.action, reason=rejection.reason)

    def _finish(
        self, run: Run, event: StatusEvent, decision: Transition | None, recorded_now: bool
    ) -> Outcome:
        """Once the decision is written (or there was nothing to write): dispatch and record what
        it caused, and repeat what an earlier, crashed handling of this same event may not have
        finished."""
        if decision is not None:
            self.on_decision(run, event, decision)
        dispatched = () if decision is None else decision.dispatches
        # A fan-out's items are dispatched as its lanes start (after the write), lane by lane.
        items_sent = () if decision is None else self.fan_outs.start_lanes(run, decision.fan_outs, event.key)
        statuses = () if decision is None else decision.statuses
        # A decision with a fallback is a success planned whole: it has just recorded the completion.
        recorded_now = recorded_now or (decision is not None and decision.fallback is not None)
        again_dispatched, again_recorded = replay(run, event.key, utcnow(), self.redispatch_after)
        items_sent += self.fan_outs.replay(run, event.key, utcnow())
        if decision is not None:
            # A decision that ended the run or a fan-out job leaves no timer to retry its items.
            self.fan_outs.settle_waiting(run)
        outcome = self._carry_out(dispatched + again_dispatched, statuses + again_recorded, recorded_now)
        self._release_slot(run, event, statuses + again_recorded)
        self._follow_children(run, event, statuses + again_recorded)
        if items_sent:
            outcome = replace(outcome, action="advanced", dispatched=outcome.dispatched + items_sent)
        self._expire_late_statuses(run, None if decision is None else decision.expiry)
        return outcome

    def _follow_children(self, run: Run, event: StatusEvent, recorded: tuple[StatusEvent, ...]) -> None:
        """A child run that ended reports to its parent attempt; a parent that ended or was
        cancelled cancels its children still running. Both read the run as now written, and
        only for runs that have a parent or child workflow jobs: other runs pay nothing."""
        ended = any(status.status in RUN_ENDS.values() for status in recorded)
        if ended and run.parent is not None:
            children.report_to_parent(self.store, run.run_id)
        cancelled = event.status == StatusName.CANCEL_REQUESTED
        if (ended or cancelled) and children.child_jobs(run.definition):
            reason = (
                f"its parent run {run.run_id} was cancelled"
                if cancelled
                else f"its parent run {run.run_id} ended"
            )
            children.cancel_children(self.store, run.run_id, reason)

    def _record_completion(self, run_id: str, fallback: Transition | None) -> Run | None:
        """The completion alone, for a success whose whole plan lost to another writer: the run
        after it, or None (nothing to record, or it does not fit, which the next decision on the
        re-read run finds and fails the run for)."""
        if fallback is None:
            return None
        try:
            return self.store.record_job_success(run_id, fallback.conditions, fallback.changes)
        except DocumentRejected as exc:
            log.error("a completion in run %r cannot be stored: %s", run_id, exc)
            return None

    def _expire_late_statuses(self, run: Run, expiry: Expiry | None) -> None:
        """The run's statuses expire with it: stamped when the decision that ends (or reopens)
        the run has recorded its statuses, and again whenever an event reaches a run that has
        ended with an expiry (a late report, a redelivery), so statuses recorded after the end
        expire too. Runs kept for good cost nothing here."""
        if expiry is None and run.state != RunState.RUNNING and run.expire_at is not None:
            expiry = Expiry(run.expire_at)
        if expiry is None:
            return
        self.store.expire_statuses(run.run_id, expiry.at)
        # The expiry was decided on the run as read: a redrive (or a new end) may have changed it
        # since, and stamped its own before this stamp. Read it again and put right what this
        # stamp got wrong, until the run and its statuses agree: a running run's data never
        # expires, and an ended run's expires with it.
        for _ in range(MAX_DECISIONS):
            current = self.store.read_run(run.run_id)
            if current is None or current.expire_at == expiry.at:
                return
            expiry = Expiry(current.expire_at)
            self.store.expire_statuses(run.run_id, None)
            if expiry.at is not None:
                self.store.expire_statuses(run.run_id, expiry.at)

    def _carry_out(
        self, dispatched: tuple[JobEvent, ...], recorded: tuple[StatusEvent, ...], recorded_now: bool
    ) -> Outcome:
        """Dispatch and record what a decision (now written) caused; both are safe to repeat."""
        self._dispatch_all(dispatched)
        for status in recorded:
            self.store.record_status(status)
        action = "advanced" if dispatched or recorded else "recorded" if recorded_now else "nothing to do"
        return Outcome(action=action, dispatched=dispatched, recorded=tuple(s.status for s in recorded))

    def _dispatch_all(self, jobs: Sequence[JobEvent]) -> None:
        """Dispatch in batches, each concurrently; after each batch of a decision that dispatches
        many jobs, record which invocations Lambda accepted (``replay`` skips them)."""
        for start in range(0, len(jobs), DISPATCH_BATCH):
            batch = jobs[start : start + DISPATCH_BATCH]
            if self.dispatch_threads > 1 and len(batch) > 1:
                with ThreadPoolExecutor(min(self.dispatch_threads, len(batch))) as pool:
                    futures = [pool.submit(self.dispatch, job) for job in batch]
                errors = [error for future in futures if (error := future.exception()) is not None]
                if errors:
                    raise errors[0]
            else:
                for job in batch:
                    self.dispatch(job)
            if len(jobs) > DISPATCH_BATCH:
                invoked = jobs_invoked({job.job: job.attempt for job in batch})
                self.store.apply_transition(batch[0].run_id, {}, invoked)

    def dispatch(self, job: JobEvent) -> None:
        """One invocation, when the job's limits across runs allow it (else the attempt waits
        for them: ``runtime.service.job_limits``)."""
        job_limits.send(self.store, job, self.invoke)

    def invoke(self, job: JobEvent) -> None:
        """One invocation; one that can never be accepted (too large, refused by Lambda) is
        recorded as the attempt's failure, so the run goes on to retry or fail it. The event
        carries the attempt's own key when statuses are signed."""
        job = self._with_key(job)
        if job.child is not None:
            self._start_child(job)
            return
        size = limits.json_bytes(job.to_payload())
        try:
            if size > limits.JOB_EVENT_MAX_BYTES:
                raise InvocationRefused(
                    f"the event for job {job.job!r} (attempt {job.attempt}) is {size:,} bytes of JSON; "
                    f"at most {limits.JOB_EVENT_MAX_BYTES:,} fit a Lambda invocation (the run input and "
                    f"the outputs it sees, {', '.join(job.results) or 'none'}, go in it)"
                )
            self.dispatcher.dispatch(job)
        except InvocationRefused as exc:
            log.error("%s", exc)
            self.store.record_status(attempt_failed(job, str(exc)))

    def _start_child(self, job: JobEvent) -> None:
        """A child workflow job's attempt: its child run is started in place of a function; one
        that cannot be is the attempt's failure."""
        try:
            if self.children is None:
                raise InvocationRefused(
                    f"job {job.job!r} runs a child workflow, and none can be started here"
                )
            request = replace(
                children.child_start(job, self.store.items().outputs),
                resume=children.resumable_child(self.store, job),
            )
            self.children.start_child(request)
        except (children.ChildInputError, InvocationRefused) as exc:
            log.error("%s", exc)
            self.store.record_status(attempt_failed(job, str(exc)))

    def _handle_failure_record(self, payload: Mapping[str, Any]) -> Outcome:
        """Lambda gave up on a job invocation: the engine decides whether that is the attempt's
        failure, on the attempt's own reports."""
        record = parse_failure_record(payload)
        job = self._with_key(record.job_event)
        sent = record.job_event
        keys = self.store.keys
        if keys is not None and not is_attempt_key(
            keys, sent.run_id, sent.job, sent.attempt, sent.index, sent.attempt_key
        ):
            # Anyone who may invoke the orchestrator (every job function may: it is their
            # on-failure destination) could otherwise fail another attempt with a record of its own.
            return self._reject(
                attempt_failed(job, "an on-failure record"),
                "an on-failure record without the key its attempt was dispatched with (Lambda's "
                "own records carry the invoked event, key included)",
            )
        terminal = self.store.read_terminal_status(
            job.run_id, job.phase, job.job, job.attempt, job.index, job.slot
        )
        lease = None
        if terminal is None:
            lease = self.store.read_lease(
                lease_id(job.run_id, job.job, job.attempt, job.index, job.slot), job.attempt_key
            )
        failure = plan_give_up(record, terminal, lease, utcnow())
        if isinstance(failure, Rejection):
            return Outcome(action=failure.action, reason=failure.reason)
        self.store.record_status(failure)
        return Outcome(action="recorded", recorded=(failure.status,))

    def _with_key(self, job: JobEvent) -> JobEvent:
        keys = self.store.keys
        if keys is None:
            return job
        token = callback_token(keys, job.workflow, job.run_id, job.job, job.attempt) if job.callback else None
        return replace(
            job,
            attempt_key=keys.attempt_key(job.run_id, job.job, job.attempt, job.index),
            callback_token=token,
        )
