"""Run concurrency's decisions (a workflow's ``concurrency``, ``priority``, ``on_limit``, and the
``schedule_overlap`` of its scheduled runs): which slots a run needs, where it stands in its key's
queue, and what a queued run becomes when it starts, is skipped or is cancelled before it starts.
Pure: the slots themselves are taken and released by ``runtime.service.run_slots``.

Priority ages: a queued run's rank is the minute it arrived in (``PRIORITY_AGING`` since the
epoch) less its priority, and the queue starts the lowest rank first. Two runs compare the same
however long they have waited (the minutes they waited cancel out), so the order is written once,
with the run, and never rewritten; and a run waiting for N minutes has gained N points on every
run that arrives after it, so a stream of higher-priority runs passes it only for as many minutes
as their priority is above its own, never for ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jmespath
import jmespath.exceptions

from runtime.definition.model import Workflow
from runtime.documents.run import Run, run_ended, run_is
from runtime.documents.slots import key_text, promoted
from runtime.engine.transition import Transition, expire_at_for, expiry_of, run_status
from runtime.errors import RunError
from runtime.statuses import RUN_ENDS, RunState

PRIORITY_AGING = timedelta(minutes=1)
"""A queued run's priority grows by one for each of these it waits. Fixed: a minute makes a
priority read as "minutes to go ahead by", and a run's rank is then a small integer."""

SCHEDULED_KEY = "scheduled"
"""The key the scheduled runs of a workflow without ``concurrency`` share under its
``schedule_overlap`` (its other runs have no key: they take no slot)."""

SCHEDULE_OVERLAP_LIMIT = {"skip": "skip", "buffer_one": "buffer_one", "cancel_other": "cancel_oldest"}
"""What each ``schedule_overlap`` but ``allow`` does with the one slot of the scheduled runs:
the ``on_limit`` it plays (``buffer_one``: ``queue``, with one run waiting at most)."""


@dataclass(frozen=True, kw_only=True)
class Admission:
    """The slots of a run's key: how many, what a run that finds them all held does (an
    ``on_limit``, or ``buffer_one``), and the spec's words for it."""

    limit: int
    on_limit: str
    setting: str
    """The setting that decides, e.g. ``on_limit: skip``: a run it ended is ``finishedBy`` it."""
    rule: str
    """The limit and the setting, for messages."""


def admission(definition: Workflow, key: str | None) -> Admission | None:
    """The slot rule a run with ``key`` (as ``run_place`` gave it) is under; None: it takes no
    slot."""
    if key is None:
        return None
    concurrency = definition.concurrency
    if concurrency is not None:
        setting = f"on_limit: {definition.on_limit}"
        return Admission(
            limit=concurrency.limit,
            on_limit=definition.on_limit,
            setting=setting,
            rule=f"concurrency limit {concurrency.limit}, {setting}",
        )
    overlap = definition.schedule_overlap
    if key != SCHEDULED_KEY or overlap not in SCHEDULE_OVERLAP_LIMIT:
        return None
    setting = f"schedule_overlap: {overlap}"
    return Admission(limit=1, on_limit=SCHEDULE_OVERLAP_LIMIT[overlap], setting=setting, rule=setting)


@dataclass(frozen=True, kw_only=True)
class Place:
    """Where a run starts: its key (None: it takes no slot), its priority and its rank."""

    key: str | None = None
    priority: int = 0
    rank: int = 0


def run_place(definition: Workflow, run_input: Any, now: datetime, *, scheduled: bool = False) -> Place:
    """The run's concurrency key (None: it takes no slot), its priority and its rank, worked out
    from its input when it starts at ``now``; a ``scheduled`` run of a workflow without
    ``concurrency`` takes the schedule's slot unless its ``schedule_overlap`` is ``allow``.
    ``RunError`` when the priority is not an integer or an expression cannot be evaluated: the
    run is refused before anything is written."""
    concurrency = definition.concurrency
    if concurrency is None:
        taken = scheduled and definition.schedule_overlap in SCHEDULE_OVERLAP_LIMIT
        return Place(key=SCHEDULED_KEY, rank=queue_rank(0, now)) if taken else Place()
    scope = {"input": run_input}
    key = key_text(None if concurrency.key is None else _evaluate(concurrency.key, scope, "concurrency.key"))
    value = None if definition.priority is None else _evaluate(definition.priority, scope, "priority")
    if value is None:
        return Place(key=key, rank=queue_rank(0, now))
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise RunError(
            f"priority {definition.priority!r} gives {value!r} for this input; it must give an integer "
            "(or null, priority 0)"
        )
    return Place(key=key, priority=int(value), rank=queue_rank(int(value), now))


def queue_rank(priority: int, now: datetime) -> int:
    """The rank of a run of ``priority`` arriving at ``now``: the ``PRIORITY_AGING`` periods
    since the epoch, less its priority."""
    return int(now.timestamp() // PRIORITY_AGING.total_seconds()) - priority


def _evaluate(expression: str, scope: dict[str, Any], name: str) -> Any:
    try:
        return jmespath.search(expression, scope)
    except jmespath.exceptions.JMESPathError as exc:
        raise RunError(f"{name} {expression!r} cannot be evaluated on this input: {exc}") from exc


def plan_start(run: Run) -> Transition:
    """A queued run that holds a slot starts: running, its ``workflow_started`` recorded next."""
    return Transition(conditions=run_is(RunState.QUEUED), changes=promoted())


def plan_end_queued(run: Run, key: str, error: str, now: datetime) -> Transition:
    """A queued run ends ``cancelled`` without starting (cancelled, or skipped by ``on_limit:
    skip``), with ``error`` saying why; ``key`` is the event's or the decision's."""
    expire_at = expire_at_for(run, now)
    return Transition(
        conditions=run_is(RunState.QUEUED),
        changes=run_ended(RunState.CANCELLED, key, error, expire_at),
        statuses=(run_status(run, RUN_ENDS[RunState.CANCELLED], error=error),),
        expiry=expiry_of(expire_at),
    )
