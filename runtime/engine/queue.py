"""Run concurrency's decisions (a workflow's ``concurrency``, ``priority``, ``on_limit``): where a
run stands in its key's queue, and what a queued run becomes when it starts, is skipped or is
cancelled before it starts. Pure: the slots themselves are taken and released by
``runtime.service.run_slots``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jmespath
import jmespath.exceptions

from runtime.definition.model import Workflow
from runtime.documents.run import Run, run_ended, run_is
from runtime.documents.slots import key_text, promoted
from runtime.engine.transition import Transition, expire_at_for, expiry_of, run_status
from runtime.errors import RunError
from runtime.statuses import RUN_ENDS, RunState


def run_place(definition: Workflow, run_input: Any) -> tuple[str | None, int]:
    """The run's concurrency key (None: the workflow has no ``concurrency``) and its priority,
    worked out from its input when it starts. ``RunError`` when the priority is not an integer
    or an expression cannot be evaluated: the run is refused before anything is written."""
    concurrency = definition.concurrency
    if concurrency is None:
        return None, 0
    scope = {"input": run_input}
    key = key_text(None if concurrency.key is None else _evaluate(concurrency.key, scope, "concurrency.key"))
    value = None if definition.priority is None else _evaluate(definition.priority, scope, "priority")
    if value is None:
        return key, 0
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise RunError(
            f"priority {definition.priority!r} gives {value!r} for this input; it must give an integer "
            "(or null, priority 0)"
        )
    return key, int(value)


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
