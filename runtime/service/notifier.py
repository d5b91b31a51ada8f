"""The notifier: one short human message per status event the spec's ``notify.on`` names.

Events arrive at least once, so the notifier claims each status document before it publishes
(the claim is keyed by the document's identity) and marks the claim sent afterwards: duplicate
deliveries find the claim and send nothing. A handling that dies between its claim and the
publish leaves a claim marked ``sending``: Lambda's retry of that handling (same request id, a
minute later) takes it over and sends, and so does any delivery once the claim is older than
``SENDING_LEASE``. So a message is never lost to a crash, and goes out twice only when a
handling died after publishing and before marking the claim sent (or when one of several
channels failed after another had published: the retry publishes to every channel again).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from runtime.documents.envelopes import parse_status_event
from runtime.documents.run import Run, StatusEvent
from runtime.engine import joins
from runtime.engine.progress import failure_is_final
from runtime.errors import EventError
from runtime.limits import LAMBDA_RETRY_DELAY
from runtime.ports import NotificationClaims, Notifier, RunStore
from runtime.service.approvals import approval_commands
from runtime.statuses import ATTEMPT_FAILED, ENDED, JobState, StatusName

log = logging.getLogger(__name__)

ERROR_SUMMARY_CHARS = 300
ITEMS_NAMED = 3
"""Failed items a message about a fan-out names (the first by index); the count says the rest."""
RUN_ENDED = (StatusName.WORKFLOW_SUCCEEDED, StatusName.WORKFLOW_FAILED)
"""The ends of a run whose message names what it tolerated."""


SENDING_LEASE = timedelta(minutes=5)
"""A claim still ``sending`` this long after it was made belongs to a handling that has ended
(the notifier function's timeout is a minute): any delivery may then take it over and send."""


def _first_line(error: str | None) -> str:
    text = (error or "no error message").strip().splitlines()[0]
    return text if len(text) <= ERROR_SUMMARY_CHARS else text[: ERROR_SUMMARY_CHARS - 1] + "…"


def compose(
    event: StatusEvent,
    max_attempts: int | None = None,
    run_over: bool = False,
    *,
    may_fail: bool = False,
    tolerated: Sequence[str] = (),
    caught: Sequence[str] = (),
    item_failures: Sequence[str] = (),
    retried: bool | None = None,
) -> tuple[str, str]:
    """(subject, message) for one status event; ``max_attempts`` and ``run_over`` (the run has
    already ended) let a job failure say whether it will be retried, ``may_fail`` (the job has
    ``allow_failure``) that the run goes on without it; the end of a run names the jobs whose
    failure it ``tolerated`` and those a join after them ``caught``. ``item_failures``: a summary
    line per fan-out job with failed items (of the job that failed, or at the end of a run, of
    every job). ``retried``: whether another
    attempt follows this failure (None: told from ``max_attempts`` while the run goes on)."""
    run = f"{event.workflow} run {event.run_id}"
    if event.status == StatusName.FAILED:
        of = f" of {max_attempts}" if max_attempts else ""
        if retried is None and max_attempts is not None and not run_over:
            retried = event.attempt < max_attempts
        retry = ""
        if retried:
            retry = "; it will be retried"
        elif may_fail and retried is False:
            retry = "; no attempts left, tolerated (allow_failure): the run goes on"
        elif run_over:
            retry = "; the run has ended"
        elif retried is False:
            retry = "; no attempts left"
        items = "".join(f"\n{line}" for line in item_failures)
        return (
            f"{event.workflow}: job {event.job} failed",
            f"{run}: job {event.job} (phase {event.phase}) failed on attempt {event.attempt}{of}{retry}.\n"
            f"Error: {_first_line(event.error)}{items}",
        )
    if event.status == StatusName.STARTED:
        return (
            f"{event.workflow}: job {event.job} started",
            f"{run}: job {event.job} started (attempt {event.attempt}).",
        )
    if event.status == StatusName.SUCCESS:
        return (f"{event.workflow}: job {event.job} succeeded", f"{run}: job {event.job} succeeded.")
    if event.status == StatusName.PHASE_COMPLETED:
        return (f"{event.workflow}: phase {event.phase} completed", f"{run}: phase {event.phase} completed.")
    if event.status == StatusName.WORKFLOW_STARTED:
        return (f"{event.workflow}: run started", f"{run} started.")
    also = f"\nFailed and tolerated (allow_failure): {', '.join(tolerated)}." if tolerated else ""
    also += f"\nFailed and caught by a join after it: {', '.join(caught)}." if caught else ""
    also += "".join(f"\n{line}" for line in item_failures)
    if event.status == StatusName.WORKFLOW_SUCCEEDED:
        return (f"{event.workflow}: run succeeded", f"{run} succeeded.{also}")
    if event.status == StatusName.WORKFLOW_CANCELLED:
        why = f": {_first_line(event.reason)}" if event.reason else ""
        return (f"{event.workflow}: run cancelled", f"{run} was cancelled{why}.")
    if event.status == StatusName.WORKFLOW_REDRIVEN:
        return (
            f"{event.workflow}: run redriven",
            f"{run} was redriven (redrive {event.attempt}): it goes on from where it stopped.",
        )
    if event.status == StatusName.WORKFLOW_FAILED:
        return (f"{event.workflow}: run failed", f"{run} failed: {_first_line(event.error)}{also}")
    if event.status == StatusName.APPROVAL_REQUESTED and event.job is not None:
        approve, reject = approval_commands(event.run_id, event.job)
        asked = f"{event.reason.strip()}\n" if event.reason and event.reason.strip() else ""
        return (
            f"{event.workflow}: job {event.job} waits for approval",
            f"{run}: job {event.job} (phase {event.phase}) waits for an answer.\n{asked}"
            f"Approve: {approve}\nReject:  {reject}\n"
            '(or invoke the starter function with {"action": "approve" | "reject", "run_id", "job"})',
        )
    return (f"{event.workflow}: {event.status}", f"{run}: {event.status}.")


@dataclass
class NotifierService:
    notifiers: Sequence[Notifier]
    store: RunStore | None = None
    """Used to say whether a failed job will be retried; the message is still sent without it."""
    claims: NotificationClaims | None = None
    """Makes each status's message go out once however often it is delivered; without claims
    every delivery sends."""
    retry_after: timedelta = LAMBDA_RETRY_DELAY
    """How old a handling's own claim must be before a delivery with its request id (Lambda's
    retry after it crashed, not a duplicate of it) takes the claim over."""
    lease: timedelta = SENDING_LEASE

    def handle(self, event: object, request_id: str | None = None) -> tuple[str, str] | None:
        """Publish the message about ``event``: (subject, message), or None when the event is
        malformed or its message was sent (or is being sent) by another delivery."""
        try:
            status = parse_status_event(event)
        except EventError as exc:
            log.warning("dropped a malformed event: %s", exc)
            return None
        if status.index is not None:
            # An item of a for_each job: its job's own success or failure is what people hear of.
            return None
        keys = None if self.store is None else self.store.keys
        reason = None if keys is None else status.rejection(keys)
        if reason is not None:
            # Not vouched for (docs/architecture.md, "Trust"): nobody hears of it; the orchestrator
            # records the rejection of the statuses it acts on.
            log.warning("dropped %s of run %s, not authentic: %s", status.key, status.run_id, reason)
            return None
        run = self._run_of(status)
        if run is not None and not notified(run, status):
            return None
        request_id = request_id or uuid.uuid4().hex
        claims = self.claims
        if claims is not None and not claims.claim_notification(
            status, request_id, self.retry_after, self.lease
        ):
            log.info("%s of run %s: notified by another delivery", status.key, status.run_id)
            return None
        try:
            subject, message = compose(status, **self._outlook(status, run))
            for notifier in self.notifiers:
                notifier.publish(subject, message)
        except Exception:
            # Nothing (or not everything) went out: let the retry of this handling send at once.
            if claims is not None:
                claims.release_notification(status, request_id)
            raise
        if claims is not None:
            claims.notification_sent(status)
        return subject, message

    def _run_of(self, status: StatusEvent) -> Run | None:
        """The run, for what a job's failure or a run's end says (None: without a store, or for
        any other status, which needs none)."""
        if self.store is None or status.status not in (StatusName.FAILED, *RUN_ENDED):
            return None
        return self.store.read_run(status.run_id)

    def _outlook(self, status: StatusEvent, run: Run | None) -> dict[str, Any]:
        """For a job's failure: its number of attempts, whether its run is over and whether it may
        fail, and its failed items; for the end of a run: the failures it tolerated and the
        fan-out jobs' failed items."""
        if (
            run is None
            or (status.status != StatusName.FAILED or not status.job)
            and status.status not in RUN_ENDED
        ):
            return {}
        if status.status in RUN_ENDED:
            tolerated = [
                job.name
                for job in run.definition.jobs()
                if run.jobs[job.name].state == JobState.FAILED
                and joins.failure_allowed(job, run.jobs[job.name].error)
            ]
            states = {name: record.state for name, record in run.jobs.items()}
            caught = [
                job.name
                for job in run.definition.jobs()
                if run.jobs[job.name].state == JobState.FAILED
                and not joins.failure_allowed(job, run.jobs[job.name].error)
                and joins.caught(run.definition, job.name, states) is True
            ]
            return {
                "tolerated": tolerated,
                "caught": caught,
                "item_failures": self._item_failures(run, list(run.jobs)),
            }
        if status.job is None or status.job not in run.jobs:
            return {"run_over": run.state in ENDED}
        job = run.definition.job(status.job)
        return {
            "max_attempts": job.max_attempts,
            "run_over": run.state in ENDED,
            "may_fail": joins.failure_allowed(job, status.error),
            "retried": not failure_is_final(run, status),
            "item_failures": self._item_failures(run, [job.name]),
        }

    def _item_failures(self, run: Run, jobs: Sequence[str]) -> list[str]:
        """One line per fan-out job of ``jobs`` with failed items: how many, and the first few
        (index, value, error)."""
        assert self.store is not None
        lines = []
        for name in jobs:
            fan_out = run.jobs[name].fan_out
            if fan_out is None or not fan_out.failed:
                continue
            shown = self.store.items().failed_items(run.run_id, name, ITEMS_NAMED)
            named = "; ".join(
                f"item {item.index} {_first_line(json.dumps(item.item, default=str))}: "
                f"{_first_line(item.error)}"
                for item in shown
            )
            more = ", ..." if fan_out.failed > len(shown) else ""
            lines.append(f"Items of {name} that failed: {fan_out.failed} of {fan_out.count} ({named}{more}).")
        return lines


def notified(run: Run, status: StatusEvent) -> bool:
    """Whether the spec's ``notify.on`` asks for this status: a job's ``failed`` report is
    ``attempt_failed`` always, and ``failed`` only when it is the job's final failure (no retry
    follows it)."""
    if status.status != StatusName.FAILED or status.job is None:
        return True
    on = run.definition.notify.on
    if ATTEMPT_FAILED in on:
        return True
    return StatusName.FAILED.value in on and failure_is_final(run, status)
