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

from runtime.engine import (
    DISPATCHED,
    LAMBDA_RETRY_DELAY,
    SUCCEEDED,
    Run,
    RunStatus,
    Transition,
    plan_failure,
    plan_progress,
    record_success,
    replay,
)
from runtime.errors import EventError
from runtime.events import (
    JobEvent,
    StatusEvent,
    as_mapping,
    is_failure_record,
    parse_failure_record,
    parse_status_event,
)
from runtime.ports import Dispatcher, InvocationRefused
from runtime.store import Store, status_document, success_changes, utcnow

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
    store: Store
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
        if status.status == "success":
            return self._handle_success(status)
        if status.status in ("failed", "workflow_started"):
            return self._decide(status, self._load(status))
        return Outcome(action="ignored", reason=f"the orchestrator does not act on {status.status!r}")

    def _load(self, event: StatusEvent) -> Run | None:
        document = self.store.load_run(event.run_id)
        return None if document is None else Run.from_document(document)

    def _handle_success(self, event: StatusEvent) -> Outcome:
        """Optimistically: read the run, decide, and write the completion together with all that
        follows in one write guarded by the version read (two round trips, one write). When another
        handler wrote in between, fall back to recording the completion atomically and deciding
        on what that write returns, which stays cheap however many completions race."""
        assert event.job is not None
        run = self._load(event)
        if run is not None and event.job in run.jobs:
            state = run.jobs[event.job]
            if state.state == DISPATCHED and state.attempt == event.attempt:
                transition = plan_progress(record_success(run, event.job, event.output), event.key, utcnow())
                changes = success_changes(event.job, event.output)
                if transition is not None:
                    changes.update(transition.changes)
                if self.store.apply_transition(run.run_id, {"version": run.version}, changes):
                    if transition is None:
                        return self._carry_out(event, [], [], recorded_now=True)
                    return self._carry_out(event, list(transition.dispatches), list(transition.records), True)
                document = self.store.record_job_success(event.run_id, event.job, event.attempt, event.output)
                if document is not None:
                    return self._decide(event, Run.from_document(document), recorded_now=True)
                run = self._load(event)
        return self._decide(event, run)

    def _decide(self, event: StatusEvent, run: Run | None, recorded_now: bool = False) -> Outcome:
        if run is None:
            log.warning("dropped %s: unknown run %r", event.key, event.run_id)
            return Outcome(action="dropped", reason=f"unknown run {event.run_id!r}")
        if event.job is not None and event.job not in run.jobs:
            log.warning("dropped %s: run %r has no job %r", event.key, event.run_id, event.job)
            return Outcome(action="dropped", reason=f"run {event.run_id!r} has no job {event.job!r}")
        if event.status == "success" and not recorded_now:
            state = run.jobs[event.job or ""]
            if state.state != SUCCEEDED or state.attempt != event.attempt:
                log.info("ignored stale %s of run %r (job is %s)", event.key, run.run_id, state.state)
                return Outcome(action="ignored", reason="stale success")
        dispatched: list[JobEvent] = []
        recorded: list[RunStatus] = []
        for _ in range(MAX_DECISIONS):
            transition = self._plan(event, run)
            if transition is not None and not self.store.apply_transition(
                run.run_id, transition.conditions, transition.changes
            ):
                # Another handler changed the run since we read it: read again, decide again.
                reloaded = self._load(event)
                if reloaded is None:
                    return Outcome(action="dropped", reason=f"run {event.run_id!r} disappeared")
                run = reloaded
                continue
            if transition is not None:
                dispatched.extend(transition.dispatches)
                recorded.extend(transition.records)
            # Repeat what an earlier, crashed handling of this same event may not have finished.
            again_dispatched, again_recorded = replay(run, event.key, utcnow(), self.redispatch_after)
            dispatched.extend(again_dispatched)
            recorded.extend(again_recorded)
            break
        else:
            raise RuntimeError(
                f"no decision for {event.key} of run {event.run_id!r} after {MAX_DECISIONS} tries"
            )
        return self._carry_out(event, dispatched, recorded, recorded_now)

    def _carry_out(
        self, event: StatusEvent, dispatched: list[JobEvent], recorded: list[RunStatus], recorded_now: bool
    ) -> Outcome:
        """Dispatch and record what a decision (now written) caused; both are safe to repeat."""
        for job_event in dispatched:
            self._dispatch(job_event)
        for status in recorded:
            self._record(event, status)
        action = "advanced" if dispatched or recorded else "recorded" if recorded_now else "nothing to do"
        return Outcome(
            action=action, dispatched=tuple(dispatched), recorded=tuple(r.status for r in recorded)
        )

    def _dispatch(self, job: JobEvent) -> None:
        try:
            self.dispatcher.dispatch(job)
        except InvocationRefused as exc:
            log.error("%s", exc)
            self.store.insert_status(
                status_document(
                    job.run_id, job.workflow, job.phase, job.job, "failed", job.attempt, error=str(exc)
                )
            )

    @staticmethod
    def _plan(event: StatusEvent, run: Run) -> Transition | None:
        if event.status == "failed":
            return plan_failure(run, event, utcnow())
        return plan_progress(run, event.key, utcnow())

    def _record(self, event: StatusEvent, status: RunStatus) -> None:
        fields = {} if status.error is None else {"error": status.error}
        self.store.insert_status(
            status_document(event.run_id, event.workflow, status.phase, None, status.status, 0, **fields)
        )

    def _handle_failure_record(self, payload: Mapping[str, Any]) -> Outcome:
        """Lambda gave up on a job invocation: count it as a failed attempt, unless the attempt
        reported its own end, or another invocation owns it (it claimed the attempt first)."""
        record = parse_failure_record(payload)
        job = record.job_event
        if self.store.terminal_status(job.run_id, job.phase, job.job, job.attempt) is not None:
            return Outcome(action="ignored", reason="the attempt already reported its end")
        started = self.store.find_status(job.run_id, job.phase, job.job, "started", job.attempt)
        if started is not None and started.get("requestId") not in (None, record.request_id):
            return Outcome(action="ignored", reason="another invocation owns the attempt")
        self.store.insert_status(
            status_document(
                job.run_id, job.workflow, job.phase, job.job, "failed", job.attempt, error=record.error
            )
        )
        return Outcome(action="recorded", recorded=("failed",))


_state: dict[str, Orchestrator] = {}


def _build() -> Orchestrator:
    import boto3

    from runtime.ports import LambdaDispatcher
    from runtime.store import store_from_env

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
