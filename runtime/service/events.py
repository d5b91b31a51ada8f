"""Sending events to event jobs, and delivering the events kept for a wait that began later.

``send_event`` keeps the event (``runtime.documents.sent_events``), then records it as an
``event_received`` status of each attempt that waits for it now and whose ``match`` it meets; the
orchestrator applies that status like an approval's answer. When an event job's attempt starts
waiting the engine records ``event_awaited``; the orchestrator applying it calls
``deliver_kept``, which records the oldest kept event that matches. Keeping comes before reading
the runs in a send, and the wait is written before ``event_awaited`` is: so an event sent while a
wait begins is seen by the one or the other (or both), never by neither. Both record the same
status of the attempt, whose unique key holds one per attempt: an attempt takes one event, once,
however many senders, redeliveries and reorders.

Standard library and the store port only: the starter function imports this inside Lambda.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from runtime import limits
from runtime.clock import utcnow
from runtime.documents.outputs import not_stored_as_is
from runtime.documents.run import Run, StatusEvent
from runtime.documents.sent_events import SentEvent
from runtime.engine.event_jobs import event_received, matches, waiting_for
from runtime.errors import OperationRefused, RunNotFound
from runtime.ports import RunStore
from runtime.statuses import RunState

RUNS_SCANNED_MAX = 10_000
"""Running runs of a workflow a send to the whole workflow looks through at most (newest first)."""

EVENT_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
"""What an event's name (and an event id) may be: what the spec's ``event.name`` takes."""


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """An event recorded for one waiting attempt."""

    run_id: str
    job: str
    attempt: int


@dataclass(frozen=True, kw_only=True)
class EventReceipt:
    """What a send did."""

    event_id: str
    created: bool
    """False: an event with this id was sent before (its payload is the one kept)."""
    delivered: tuple[Delivery, ...]
    """The waiting attempts it was recorded for now (more may take it later, within retention)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "created": self.created,
            "delivered": [
                {"run_id": one.run_id, "job": one.job, "attempt": one.attempt} for one in self.delivered
            ],
        }

    @classmethod
    def from_json(cls, answer: dict[str, Any]) -> EventReceipt:
        """The starter's answer to an ``event`` action."""
        return cls(
            event_id=answer["event_id"],
            created=bool(answer["created"]),
            delivered=tuple(Delivery(**one) for one in answer["delivered"]),
        )


def send_event_command(workflow: str, name: str, run_id: str) -> str:
    """The command that sends an event job's event to its run (what progress tells people)."""
    return f"python -m cdk_app send-event {workflow} {name} --payload '{{...}}' --run {run_id}"


def send_event(
    store: RunStore,
    workflow: str,
    name: str,
    payload: Any,
    *,
    run_id: str | None = None,
    event_id: str | None = None,
) -> EventReceipt:
    """Send the event ``name`` with ``payload`` to the runs of ``workflow`` (or to run ``run_id``
    alone): kept for waits that begin later, recorded for each attempt waiting now that it
    matches. ``event_id`` makes a repeated send one event (a new one is drawn when not given)."""
    _check_name(name, "event name")
    if event_id is not None:
        _check_name(event_id, "event id")
    _check_payload(name, payload)
    if run_id is not None:
        _target_runs(store, workflow, run_id)  # refused before anything is kept
    sent = SentEvent(
        workflow=workflow,
        name=name,
        event_id=event_id or secrets.token_hex(16),
        payload=payload,
        sent_at=utcnow(),
        run_id=run_id,
    )
    kept = store.sent_events().keep(sent)
    runs = _target_runs(store, workflow, run_id)  # read after keeping: see the module's note
    delivered = [delivery for run in runs for delivery in _deliver(store, run, kept)]
    return EventReceipt(event_id=kept.event_id, created=kept is sent, delivered=tuple(delivered))


def deliver_kept(store: RunStore, awaited: StatusEvent) -> Delivery | None:
    """The attempt ``awaited`` names has started waiting: record for it the oldest event kept for
    its run, sent within its ``retention`` before the wait began, that it matches."""
    run = store.read_run(awaited.run_id)
    if run is None or awaited.job is None or awaited.job not in run.jobs:
        return None
    job = run.definition.job(awaited.job)
    record = run.jobs[job.name]
    if job.event is None or record.due_at is None:
        return None
    if (job, awaited.attempt) not in waiting_for(run, job.event.name):
        return None  # answered, timed out, or the run ended: nothing waits any more
    began = record.due_at - timedelta(seconds=job.event.timeout)
    since = began - timedelta(seconds=job.event.retention)
    for kept in store.sent_events().kept(run.workflow, job.event.name, run.run_id, since):
        if matches(run, job, kept.payload):
            store.record_status(event_received(run, job, awaited.attempt, kept.event_id, kept.payload))
            return Delivery(run_id=run.run_id, job=job.name, attempt=awaited.attempt)
    return None


def _deliver(store: RunStore, run: Run, event: SentEvent) -> list[Delivery]:
    deliveries = []
    for job, attempt in waiting_for(run, event.name):
        if matches(run, job, event.payload):
            store.record_status(event_received(run, job, attempt, event.event_id, event.payload))
            deliveries.append(Delivery(run_id=run.run_id, job=job.name, attempt=attempt))
    return deliveries


def _target_runs(store: RunStore, workflow: str, run_id: str | None) -> list[Run]:
    """The runs an event may reach now: the one named (refused when it is not the workflow's), or
    every running run of the workflow."""
    if run_id is not None:
        run = store.read_run(run_id)
        if run is None:
            raise RunNotFound(f"no run {run_id!r} in this database (check the run id and the MongoDB URI)")
        if run.workflow != workflow:
            raise RunNotFound(f"run {run_id} is a run of workflow {run.workflow!r}, not {workflow!r}")
        return [run]
    summaries = store.find_runs(workflow, RunState.RUNNING.value, None, RUNS_SCANNED_MAX)
    return [run for summary in summaries if (run := store.read_run(summary.run_id)) is not None]


def _check_name(value: object, what: str) -> None:
    if not isinstance(value, str) or not EVENT_NAME.match(value):
        raise OperationRefused(f"the {what} is 1 to 128 letters, digits and '_.:-', got {value!r}")


def _check_payload(name: str, payload: Any) -> None:
    """A payload travels as it is, in a status (through the Atlas trigger and an EventBridge
    event) and in the run document, as a job's output: JSON within
    ``limits.OUTPUT_INLINE_MAX_BYTES`` that MongoDB stores as it is."""
    where = f"the payload of event {name!r}"
    try:
        size = len(json.dumps(payload, allow_nan=False).encode())
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise OperationRefused(f"{where} is not JSON: {exc}") from None
    if size > limits.OUTPUT_INLINE_MAX_BYTES:
        raise OperationRefused(
            f"{where} is {size:,} bytes of JSON; an event carries at most "
            f"{limits.OUTPUT_INLINE_MAX_BYTES:,} (it travels in an EventBridge event): send a "
            "reference to where the data is instead"
        )
    problem = not_stored_as_is(payload)
    if problem is not None:
        raise OperationRefused(f"{where} cannot be recorded as it is: {problem}")
