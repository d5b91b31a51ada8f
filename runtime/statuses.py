"""The status vocabulary, stated once: where a job, a run and a fan-out's item are, what a
document in ``statuses`` may say, and the groupings every layer decides by. The leaf of the
runtime: standard library only, imported by everything above it (Lambda included).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Literal


class JobState(StrEnum):
    """Where one job of a run is."""

    PENDING = "pending"
    DISPATCHED = "dispatched"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    WAITING = "waiting"
    """Waiting for a time or an answer: a retry's delay (the attempt is not dispatched yet), a
    wait job, an approval job. The record's ``due_at`` is its timer."""
    CANCELLED = "cancelled"
    """Dispatched when the run was cancelled: the attempt's own reports change nothing, and a
    redrive gives the job a new attempt."""
    UPSTREAM_FAILED = "upstream_failed"
    """Not run because a job it waits for failed (or was itself ``upstream_failed``) and its
    ``join`` does not accept that: distinct from ``skipped`` (a condition said no, or a job it
    needs was skipped), so a reader tells a failure's consequence from a choice."""


DONE = frozenset({JobState.SUCCEEDED, JobState.SKIPPED})
"""Job states that count as finished without a failure, for a phase and for the jobs after."""

FAILED_STATES = frozenset({JobState.FAILED, JobState.UPSTREAM_FAILED})
"""Job states a ``join`` counts as failed: the job failed, or did not run because one it waits
for failed."""


class RunState(StrEnum):
    """Where a run is; ``running`` until it ends one way or the other."""

    QUEUED = "queued"
    """Waiting for a slot of its workflow's ``concurrency`` limit: nothing of it has started;
    it starts (``running``) when a slot frees, or is cancelled without starting."""
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ENDED = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})
REDRIVABLE = frozenset({RunState.FAILED, RunState.CANCELLED})
"""Run states a redrive reopens."""
IN_FLIGHT = frozenset({RunState.QUEUED, RunState.RUNNING})
"""Run states that have not ended: a queued run is waiting to start."""


class StatusName(StrEnum):
    """The ``status`` of a document in ``statuses``: what a job reports, or what the engine
    records for the run as a whole, or an operation someone asked for (those have no job)."""

    STARTED = "started"
    SUCCESS = "success"
    FAILED = "failed"
    WORKFLOW_STARTED = "workflow_started"
    PHASE_COMPLETED = "phase_completed"
    WORKFLOW_SUCCEEDED = "workflow_succeeded"
    WORKFLOW_FAILED = "workflow_failed"
    NOT_RUN = "not_run"
    """The job wrapper's report of an attempt it did not run: the run had ended, or the attempt
    is stale (the run has moved on to another attempt of the job)."""
    WORKFLOW_CANCELLED = "workflow_cancelled"
    WORKFLOW_REDRIVEN = "workflow_redriven"
    CANCEL_REQUESTED = "cancel_requested"
    REDRIVE_REQUESTED = "redrive_requested"
    TIMER_FIRED = "timer_fired"
    """A timer of the run came due: of a waiting job's attempt (with its job), or the run
    deadline of a round (without)."""
    APPROVAL_REQUESTED = "approval_requested"
    """The engine's record that an approval job is waiting for an answer."""
    APPROVED = "approved"
    REJECTED = "rejected"
    EVENT_AWAITED = "event_awaited"
    """The engine's record that an event job's attempt waits for its event: the orchestrator
    then delivers an event kept from before (``runtime.service.events``)."""
    EVENT_RECEIVED = "event_received"
    """An event delivered to an event job's waiting attempt (one per attempt: the unique key),
    its payload as the output, recorded by the operator path or the orchestrator."""
    CALLBACK_AWAITED = "callback_awaited"
    """The engine's record that a callback job without code waits for its token's completion:
    what the progress output shows the ``complete`` command for (nothing to decide on it)."""
    CALLBACK_COMPLETED = "callback_completed"
    """A callback job's attempt completed through its token, with an ``output`` (it succeeds) or
    an ``error`` (it fails): one per attempt (the unique key), recorded by the operator path."""
    CALLBACK_HEARTBEAT = "callback_heartbeat"
    """A callback job's waiting attempt told to wait ``timeout`` more seconds from now, by the
    operator path; each heartbeat is its own status (its id in ``slot``)."""
    STATUS_REJECTED = "status_rejected"
    """The orchestrator's record of a status it did not apply because its writer could not be
    told or may not write it (docs/architecture.md, "Trust")."""


JOB_STATUSES = (StatusName.STARTED, StatusName.SUCCESS, StatusName.FAILED)
"""Statuses a job reports into ``statuses``."""

RUN_STATUSES = (
    StatusName.WORKFLOW_STARTED,
    StatusName.PHASE_COMPLETED,
    StatusName.WORKFLOW_SUCCEEDED,
    StatusName.WORKFLOW_FAILED,
    StatusName.WORKFLOW_CANCELLED,
    StatusName.WORKFLOW_REDRIVEN,
)
"""Statuses the engine itself records for a run (``job`` is ``None`` on these)."""

OPERATION_STATUSES = (StatusName.CANCEL_REQUESTED, StatusName.REDRIVE_REQUESTED)
"""Operations on a run, inserted by ``runtime.service.operations`` (``job`` and ``phase`` are
``None``); the engine decides what they do."""
ANSWER_STATUSES = (StatusName.APPROVED, StatusName.REJECTED)
"""A person's answer to an approval job (with the job and the attempt that waits)."""
EVENT_STATUSES = (StatusName.EVENT_AWAITED, StatusName.EVENT_RECEIVED)
"""An event job's attempt waiting for its event, and the event delivered to it."""
CALLBACK_STATUSES = (StatusName.CALLBACK_COMPLETED, StatusName.CALLBACK_HEARTBEAT)
"""A callback job's attempt completed, or kept waiting, through its token."""
WAITING_JOB_STATUSES = (
    StatusName.APPROVAL_REQUESTED,
    *ANSWER_STATUSES,
    *EVENT_STATUSES,
    StatusName.CALLBACK_AWAITED,
    *CALLBACK_STATUSES,
)
"""Statuses of a waiting job's attempt that no job function reports."""

TERMINAL_JOB_STATUSES = (StatusName.SUCCESS, StatusName.FAILED, StatusName.NOT_RUN)
"""The reports that end a job attempt. They share one ``_id`` per attempt (``terminal_id``), so
an attempt has at most one of them, on every server."""

ATTEMPT_STATUSES = (StatusName.STARTED, *TERMINAL_JOB_STATUSES)
"""Every status that belongs to one job attempt (has a job, a phase and an attempt >= 1)."""

RUN_ENDS = {
    RunState.SUCCEEDED: StatusName.WORKFLOW_SUCCEEDED,
    RunState.FAILED: StatusName.WORKFLOW_FAILED,
    RunState.CANCELLED: StatusName.WORKFLOW_CANCELLED,
}
"""The status recorded when a run reaches each final state."""


class ItemState(StrEnum):
    """Where one item is, in its document: ``pending`` until its last attempt has ended."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class NotificationState(StrEnum):
    """Where the message about one status document is."""

    SENDING = "sending"
    """Claimed by a notifier handling that is publishing it (or died doing so)."""
    SENT = "sent"


FailureReason = Literal["failed", "cancelled"]
"""Why a run with failure handlers runs them: a job (or the run's deadline) failed it, or
someone cancelled it."""
FAILED: Literal["failed"] = "failed"
CANCELLED: Literal["cancelled"] = "cancelled"

ORCHESTRATOR_STATUSES = tuple(
    status.value
    for status in (
        StatusName.WORKFLOW_STARTED,
        StatusName.SUCCESS,
        StatusName.FAILED,
        StatusName.NOT_RUN,
        *OPERATION_STATUSES,
        StatusName.TIMER_FIRED,
        *ANSWER_STATUSES,
        *EVENT_STATUSES,
        *CALLBACK_STATUSES,
    )
)
"""Statuses the orchestrator acts on: the run's start, a job attempt's end (``not_run`` too: an
attempt the job wrapper refused never runs, so the job needs another), the operations people ask
for (cancel, redrive, an approval's answer), timers firing, and an event job's wait and event;
``started`` and the engine's own run-level statuses would only cost it invocations."""

ATTEMPT_FAILED = "attempt_failed"
"""A ``notify.on`` choice that is no status of its own: every failed attempt of a job (its
``failed`` report), where ``failed`` notifies a job's final failure only."""

NOTIFY_EVENTS = (
    *(status.value for status in (*JOB_STATUSES, *RUN_STATUSES, StatusName.APPROVAL_REQUESTED)),
    ATTEMPT_FAILED,
)
"""Every name a spec's ``notify.on`` may give."""


def notified_statuses(notify_on: Iterable[str]) -> tuple[str, ...]:
    """The statuses whose documents the notifier sees for ``notify_on``: ``attempt_failed`` is
    told from a ``failed`` report."""
    return tuple(sorted({StatusName.FAILED.value if name == ATTEMPT_FAILED else name for name in notify_on}))
