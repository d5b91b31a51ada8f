"""What a decision of the engine is: a ``Transition`` (one guarded write to a run and what it
causes), a ``Rejection``, or ``LoadOutputs``; ``Decision`` names the choice, and the small
builders every planner shares (a run's status, its expiry, a transition with what follows).
Pure, like the rest of the engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, TypeAlias

from runtime.documents.events import JobEvent
from runtime.documents.run import Fields, Run, StatusEvent
from runtime.engine.fanout import FanOutStart
from runtime.statuses import StatusName


@dataclass(frozen=True)
class Expiry:
    """When the statuses of a run are deleted, set by the transition that ends (or reopens) it."""

    at: datetime | None
    """None: kept for good again (a redriven run)."""


@dataclass(frozen=True, kw_only=True)
class Transition:
    """One write to a run and what it causes once it is made."""

    conditions: Fields
    """Field -> value the run document must still have for ``changes`` to apply."""
    changes: Fields
    dispatches: tuple[JobEvent, ...] = ()
    statuses: tuple[StatusEvent, ...] = ()
    """Run-level statuses to record once the write is made."""
    expiry: Expiry | None = None
    """The run's statuses get this expiry once they are recorded (None: no change)."""
    wake_at: datetime | None = None
    """The earliest timer the write creates (lowers the run's ``wakeAt``, the sweep's index)."""
    fan_outs: tuple[FanOutStart, ...] = ()
    """``for_each`` jobs the write starts: items stored before it, lanes started after it."""
    fallback: Transition | None = None
    """For a success planned against the whole run (its version): the completion alone, guarded
    by the job's own state, for when another handler wrote first; the rest is then decided again
    on what that write returns."""


@dataclass(frozen=True, kw_only=True)
class Rejection:
    """The run does not take the event: it names a job the run does not have (``dropped``), or
    it is stale or none of the orchestrator's business (``ignored``)."""

    action: Literal["dropped", "ignored"]
    reason: str


def run_status(
    run: Run, status: StatusName, phase: str | None = None, error: str | None = None
) -> StatusEvent:
    return StatusEvent(
        run_id=run.run_id,
        workflow=run.workflow,
        status=status,
        phase=phase,
        attempt=run.redrives,
        error=error,
    )


def expire_at_for(run: Run, now: datetime) -> datetime | None:
    """When a run ending ``now`` is deleted: after its definition's ``retention_days``, if any."""
    days = run.definition.retention_days
    return None if days is None else now + timedelta(days=days)


def expiry_of(expire_at: datetime | None) -> Expiry | None:
    """Statuses expire with their run; a run kept for good leaves them alone."""
    return None if expire_at is None else Expiry(expire_at)


def with_progress(transition: Transition, progress: Transition | None) -> Transition:
    """``transition`` and what follows from it: ``progress``, planned on the run it leaves (whose
    own conditions are implied by ``transition``'s)."""
    if progress is None:
        return transition
    return replace(
        transition,
        changes=transition.changes | progress.changes,
        dispatches=transition.dispatches + progress.dispatches,
        statuses=transition.statuses + progress.statuses,
        expiry=progress.expiry,
        wake_at=progress.wake_at,
        fan_outs=transition.fan_outs + progress.fan_outs,
    )


@dataclass(frozen=True)
class LoadOutputs:
    """The decision reads outputs kept by reference (a ``when`` or a ``for_each`` over them) that
    the run has not loaded: load them into ``Run.loaded_outputs`` and decide again. At most
    ``limits.OUTPUT_READ_MAX_BYTES`` of them in one decision: one past it is not loaded and stands
    as ``fanout.Unreadable``, which fails the expression that reads it."""

    references: Mapping[str, str]
    """Job -> reference of its stored output."""


Decision: TypeAlias = Transition | Rejection | LoadOutputs | None
"""What ``decide`` returns for one event: a write and what it causes, the event refused, outputs
to load before deciding, or None: nothing to write (the event was applied before)."""
