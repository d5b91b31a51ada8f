"""The notifier: one short human message per status event the spec's ``notify.on`` names."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runtime.documents import RunState, StatusEvent, StatusName
from runtime.errors import EventError
from runtime.events import parse_status_event
from runtime.ports import Notifier, RunStore

log = logging.getLogger(__name__)

ERROR_SUMMARY_CHARS = 300


def _first_line(error: str | None) -> str:
    text = (error or "no error message").strip().splitlines()[0]
    return text if len(text) <= ERROR_SUMMARY_CHARS else text[: ERROR_SUMMARY_CHARS - 1] + "…"


def compose(event: StatusEvent, max_attempts: int | None = None, run_over: bool = False) -> tuple[str, str]:
    """(subject, message) for one status event; ``max_attempts`` and ``run_over`` (the run has
    already ended) let a job failure say whether it will be retried."""
    run = f"{event.workflow} run {event.run_id}"
    if event.status == StatusName.FAILED:
        of = f" of {max_attempts}" if max_attempts else ""
        retry = ""
        if run_over:
            retry = "; the run has ended"
        elif max_attempts is not None:
            retry = "; it will be retried" if event.attempt < max_attempts else "; no attempts left"
        return (
            f"{event.workflow}: job {event.job} failed",
            f"{run}: job {event.job} (phase {event.phase}) failed on attempt {event.attempt}{of}{retry}.\n"
            f"Error: {_first_line(event.error)}",
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
    if event.status == StatusName.WORKFLOW_SUCCEEDED:
        return (f"{event.workflow}: run succeeded", f"{run} succeeded.")
    if event.status == StatusName.WORKFLOW_CANCELLED:
        why = f": {_first_line(event.reason)}" if event.reason else ""
        return (f"{event.workflow}: run cancelled", f"{run} was cancelled{why}.")
    if event.status == StatusName.WORKFLOW_REDRIVEN:
        return (
            f"{event.workflow}: run redriven",
            f"{run} was redriven (redrive {event.attempt}): it goes on from where it stopped.",
        )
    if event.status == StatusName.WORKFLOW_FAILED:
        return (f"{event.workflow}: run failed", f"{run} failed: {_first_line(event.error)}")
    return (f"{event.workflow}: {event.status}", f"{run}: {event.status}.")


@dataclass
class NotifierService:
    notifiers: Sequence[Notifier]
    store: RunStore | None = None
    """Used to say whether a failed job will be retried; the message is still sent without it."""

    def handle(self, event: object) -> tuple[str, str] | None:
        try:
            status = parse_status_event(event)
        except EventError as exc:
            log.warning("dropped a malformed event: %s", exc)
            return None
        max_attempts, run_over = None, False
        if status.status == StatusName.FAILED and self.store is not None and status.job:
            run = self.store.read_run(status.run_id)
            if run is not None:
                if status.job in run.jobs:
                    max_attempts = run.definition.job(status.job).max_attempts
                run_over = run.state != RunState.RUNNING
        subject, message = compose(status, max_attempts, run_over)
        for notifier in self.notifiers:
            notifier.publish(subject, message)
        return subject, message


_state: dict[str, NotifierService] = {}


def _build() -> NotifierService:
    import boto3

    from runtime.connection import store_from_env
    from runtime.ports import SlackNotifier, SnsNotifier

    notifiers: list[Notifier] = [SnsNotifier(boto3.client("sns"), os.environ["NOTIFY_TOPIC_ARN"])]
    slack_secret = os.environ.get("SLACK_WEBHOOK_SECRET_ARN")
    if slack_secret:
        notifiers.append(SlackNotifier(boto3.client("secretsmanager"), slack_secret))
    return NotifierService(notifiers=notifiers, store=store_from_env(os.environ))


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Lambda entry point (EventBridge rule target)."""
    if "service" not in _state:
        _state["service"] = _build()
    sent = _state["service"].handle(event)
    return {"sent": sent is not None, "subject": sent[0] if sent else None}
