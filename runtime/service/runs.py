"""Starting runs: shared by the starter Lambda and the CLI."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

from runtime import limits
from runtime.clock import utcnow
from runtime.definition.input_check import check_input
from runtime.definition.model import Workflow
from runtime.documents.children import ParentLink
from runtime.documents.deployment import Deployment
from runtime.documents.run import JobRecord, Run, StatusEvent
from runtime.engine.queue import run_place
from runtime.errors import RunError
from runtime.ports import RunStore
from runtime.service.run_slots import admit
from runtime.statuses import RunState, StatusName


def initial_run(
    definition: Workflow,
    run_id: str,
    run_input: Any,
    deployment: Deployment | None = None,
    parent: ParentLink | None = None,
) -> Run:
    """A run as it starts: every job pending, the first phase current, pinned to ``deployment``
    (``queued`` when its workflow has ``concurrency``: it runs once it holds a slot); a child
    run names the ``parent`` attempt it runs as."""
    return Run(
        run_id=run_id,
        definition=definition,
        input=run_input,
        state=RunState.RUNNING,
        phase=definition.phase_order()[0].name,
        jobs={job.name: JobRecord() for job in definition.jobs()},
        deployment=deployment,
        parent=parent,
    )


@dataclass(frozen=True, kw_only=True)
class StartedRun:
    run_id: str
    created: bool
    """False when a run with this id and the same input existed already."""


def start_run(
    store: RunStore,
    definition: Workflow,
    run_id: str | None = None,
    input: Any = None,
    deployment: Deployment | None = None,
    *,
    scheduled: bool = False,
    parent: ParentLink | None = None,
) -> StartedRun:
    """Start a run of ``definition``, idempotently on ``run_id``; ``scheduled``: a run its
    schedule starts (or a backfill), which its ``schedule_overlap`` applies to.

    An input that does not match the definition's ``input_schema`` is refused (``InputRefused``,
    with every problem) before anything is written. The run document snapshots the compiled
    definition, so a spec edited and redeployed while the run is in flight does not change it;
    ``deployment`` pins the function version of each job in the same insert, before anything
    can dispatch one. The ``workflow_started`` status is recorded on every call (a repeated
    report is a no-op), so a crash between the two writes loses nothing.

    A run that takes a slot (its workflow has ``concurrency``, or it is scheduled and its
    ``schedule_overlap`` is not ``allow``) is inserted ``queued``, with its key, priority, rank and
    arrival, then admitted (``runtime.service.run_slots.admit``): it starts when it holds a slot,
    which records its ``workflow_started``; a repeated start admits it again.
    """
    run_id = run_id or f"{definition.name}-{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    run_input = {} if input is None else input
    check_input(definition.name, definition.input_schema, run_input)
    size = limits.json_bytes(run_input)
    if size > limits.JOB_EVENT_MAX_BYTES:
        raise RunError(
            f"the run input is {size:,} bytes of JSON; at most {limits.JOB_EVENT_MAX_BYTES:,} fit in the "
            "events of its jobs, which carry it (store large inputs elsewhere and pass a reference)"
        )
    place = run_place(definition, run_input, utcnow(), scheduled=scheduled)
    run = initial_run(definition, run_id, run_input, deployment, parent)
    if place.key is not None:
        arrival = store.slots().arrive(definition.name, place.key)
        run = replace(
            run,
            state=RunState.QUEUED,
            concurrency_key=place.key,
            priority=place.priority,
            rank=place.rank,
            arrival=arrival,
        )
    created = store.insert_run(run)
    existing = None
    if not created:
        existing = store.read_run(run_id)
        if existing is None:
            raise RunError(f"run {run_id!r} could not be created and cannot be read back")
        if existing.workflow != definition.name:
            raise RunError(
                f"run id {run_id!r} is taken by a run of workflow {existing.workflow!r}; choose another id"
            )
        if existing.input != run_input:
            raise RunError(
                f"run {run_id!r} already exists with a different input "
                f"({existing.input!r}, not {run_input!r}); choose another run id"
            )
    admitted = run if existing is None else existing
    if admitted.concurrency_key is not None:
        admit(store, admitted)
        return StartedRun(run_id=run_id, created=created)
    store.record_status(
        StatusEvent(run_id=run_id, workflow=definition.name, status=StatusName.WORKFLOW_STARTED)
    )
    return StartedRun(run_id=run_id, created=created)
