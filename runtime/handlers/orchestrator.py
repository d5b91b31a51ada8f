"""The orchestrator: one status event in, one decision, the resulting job attempts dispatched.

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
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from runtime.documents import Run, RunState, StatusEvent, StatusName
from runtime.engine import (
    LAMBDA_RETRY_DELAY,
    Expiry,
    Rejection,
    attempt_failed,
    decide,
    plan_give_up,
    replay,
    utcnow,
)
from runtime.errors import EventError
from runtime.events import JobEvent, as_mapping, is_failure_record, parse_failure_record, parse_status_event
from runtime.patterns import ORCHESTRATOR_STATUSES
from runtime.ports import Dispatcher, InvocationRefused, RunStore

log = logging.getLogger(__name__)

MAX_DECISIONS = 100
"""Bound on re-reading after losing a conditional write to a concurrent handler; each loss means
another handler made progress, so reaching it means something else is wrong."""


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

    def handle(self, event: object) -> Outcome:
        """Never raises for a malformed or stale event (it is logged and dropped); store and
        dispatch failures do raise, so Lambda retries the event."""
        try:
            payload = as_mapping(event)
            if is_failure_record(payload):
                return self._handle_failure_record(payload)
            status = parse_status_event(payload)
        except EventError as exc:
            log.warning("dropped a malformed event: %s", exc)
            return Outcome(action="dropped", reason=str(exc))
        if status.status not in ORCHESTRATOR_STATUSES:
            return Outcome(action="ignored", reason=f"the orchestrator does not act on '{status.status}'")
        return self.apply(status)

    def apply(self, event: StatusEvent) -> Outcome:
        """Read the run, ask the engine, write what it decided under the conditions it decided
        on; when another handler wrote in between, read again and decide again. The reconciler
        feeds the statuses a run has missed through here too. A success is
        planned against the whole run (two round trips, one write); when that write loses, the
        completion alone is recorded atomically and the rest decided on what that write returns,
        which stays cheap however many completions race."""
        run = self.store.read_run(event.run_id)
        recorded_now = False
        for _ in range(MAX_DECISIONS):
            if run is None:
                log.warning("dropped %s: unknown run %r", event.key, event.run_id)
                return Outcome(action="dropped", reason=f"unknown run {event.run_id!r}")
            decision = decide(run, event, utcnow())
            if isinstance(decision, Rejection):
                level = logging.WARNING if decision.action == "dropped" else logging.INFO
                log.log(level, "%s %s of run %r: %s", decision.action, event.key, run.run_id, decision.reason)
                self._expire_late_statuses(run, None)
                return Outcome(action=decision.action, reason=decision.reason)
            if decision is not None and not self.store.apply_transition(
                run.run_id, decision.conditions, decision.changes
            ):
                fallback = decision.fallback
                recorded = (
                    None
                    if fallback is None
                    else self.store.record_job_success(run.run_id, fallback.conditions, fallback.changes)
                )
                recorded_now = recorded_now or recorded is not None
                # Another handler changed the run since we read it: decide again on what it is now.
                run = recorded if recorded is not None else self.store.read_run(event.run_id)
                continue
            dispatched = () if decision is None else decision.dispatches
            recorded_statuses = () if decision is None else decision.statuses
            # A decision with a fallback is a success planned whole: it has just recorded the completion.
            recorded_now = recorded_now or (decision is not None and decision.fallback is not None)
            # Repeat what an earlier, crashed handling of this same event may not have finished.
            again_dispatched, again_recorded = replay(run, event.key, utcnow(), self.redispatch_after)
            outcome = self._carry_out(
                dispatched + again_dispatched, recorded_statuses + again_recorded, recorded_now
            )
            self._expire_late_statuses(run, None if decision is None else decision.expiry)
            return outcome
        raise RuntimeError(f"no decision for {event.key} of run {event.run_id!r} after {MAX_DECISIONS} tries")

    def _expire_late_statuses(self, run: Run, expiry: Expiry | None) -> None:
        """The run's statuses expire with it: stamped when the decision that ends (or reopens)
        the run has recorded its statuses, and again whenever an event reaches a run that has
        ended with an expiry (a late report, a redelivery), so statuses recorded after the end
        expire too. Runs kept for good cost nothing here."""
        if expiry is None and run.state != RunState.RUNNING and run.expire_at is not None:
            expiry = Expiry(run.expire_at)
        if expiry is not None:
            self.store.expire_statuses(run.run_id, expiry.at)

    def _carry_out(
        self, dispatched: tuple[JobEvent, ...], recorded: tuple[StatusEvent, ...], recorded_now: bool
    ) -> Outcome:
        """Dispatch and record what a decision (now written) caused; both are safe to repeat."""
        for job_event in dispatched:
            self.dispatch(job_event)
        for status in recorded:
            self.store.record_status(status)
        action = "advanced" if dispatched or recorded else "recorded" if recorded_now else "nothing to do"
        return Outcome(action=action, dispatched=dispatched, recorded=tuple(s.status for s in recorded))

    def dispatch(self, job: JobEvent) -> None:
        """Invoke one job attempt; an invocation Lambda refuses for good is that attempt's failure."""
        try:
            self.dispatcher.dispatch(job)
        except InvocationRefused as exc:
            log.error("%s", exc)
            self.store.record_status(attempt_failed(job, str(exc)))

    def _handle_failure_record(self, payload: Mapping[str, Any]) -> Outcome:
        """Lambda gave up on a job invocation: the engine decides whether that is the attempt's
        failure, on the attempt's own reports."""
        record = parse_failure_record(payload)
        job = record.job_event
        terminal = self.store.read_terminal_status(job.run_id, job.phase, job.job, job.attempt)
        claim = None
        if terminal is None:
            claim = self.store.read_status(job.run_id, job.phase, job.job, StatusName.STARTED, job.attempt)
        failure = plan_give_up(record, terminal, claim)
        if isinstance(failure, Rejection):
            return Outcome(action=failure.action, reason=failure.reason)
        self.store.record_status(failure)
        return Outcome(action="recorded", recorded=(failure.status,))


_state: dict[str, Orchestrator] = {}


def _build() -> Orchestrator:
    import boto3

    from runtime.connection import store_from_env
    from runtime.ports import LambdaDispatcher

    return Orchestrator(store=store_from_env(os.environ), dispatcher=LambdaDispatcher(boto3.client("lambda")))


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Lambda entry point (EventBridge rule target and job functions' on-failure destination)."""
    if "orchestrator" not in _state:
        _state["orchestrator"] = _build()
    outcome = _state["orchestrator"].handle(event)
    log.info("orchestrator: %s", outcome)
    return {
        "action": outcome.action,
        "dispatched": [d.job for d in outcome.dispatched],
        "reason": outcome.reason,
    }
