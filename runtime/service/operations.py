"""Operating runs: cancel and redrive requests, listings, history, waiting for an end.

An operation is a status document like any other (docs/architecture.md, "Operations and repair"): a
request inserts ``cancel_requested`` or ``redrive_requested`` into ``statuses``, so it travels
the Atlas trigger, the orchestrator rule and the orchestrator (or the local delivery loop) as a
job's report does, and the engine decides what it does to the run. The request carries the
run's round in its ``attempt`` (the number of redrives applied so far, plus one for a redrive),
so two people asking for the same thing at the same time record it once. These functions only
check that the request makes sense now and record it; the CLI and the starter function call them.

Standard library and the store port only: the starter function imports this inside Lambda.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runtime.clock import as_utc, from_iso, iso
from runtime.definition.model import Workflow
from runtime.documents.deployment import Deployment
from runtime.documents.listing import PagePosition, RunSummary
from runtime.documents.run import Run, StatusEvent, at_version, run_is, run_upgraded
from runtime.engine.upgrade import upgrade_problems, upgraded_jobs
from runtime.errors import OperationRefused, RunError, RunNotFound
from runtime.ports import RunStore
from runtime.statuses import IN_FLIGHT, REDRIVABLE, RunState, StatusName

__all__ = [
    "HistoryEntry",
    "OperationReceipt",
    "RunSummary",
    "list_runs",
    "request_cancel",
    "request_redrive",
    "request_upgrade",
    "run_history",
    "wait_for_end",
]


@dataclass(frozen=True, kw_only=True)
class OperationReceipt:
    """What a request recorded."""

    run_id: str
    operation: str
    """The status name: ``cancel_requested`` or ``redrive_requested``."""
    sequence: int
    """The operation's sequence number (its ``attempt`` in the unique key of ``statuses``)."""
    created: bool
    """False: the same request was recorded before (and is applied once)."""


@dataclass(frozen=True, kw_only=True)
class HistoryEntry:
    """One status document of a run, as people read the run's history."""

    date: datetime | None
    status: str
    phase: str | None
    job: str | None
    attempt: int
    """A job's attempt; on a run-level status, the run's round (redrives before it)."""
    error: str | None
    output: Any
    reason: str | None
    index: int | None = None
    """The item of a ``for_each`` job the status is about."""

    def to_json(self) -> dict[str, Any]:
        """A line of ``history --json`` and of the starter's ``history``."""
        return {
            "date": iso(self.date),
            "status": self.status,
            "phase": self.phase,
            "job": self.job,
            "attempt": self.attempt,
            "error": self.error,
            "output": self.output,
            "reason": self.reason,
            "index": self.index,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> HistoryEntry:
        return cls(
            date=from_iso(document.get("date")),
            status=document["status"],
            phase=document.get("phase"),
            job=document.get("job"),
            attempt=document.get("attempt", 0),
            error=document.get("error"),
            output=document.get("output"),
            reason=document.get("reason"),
            index=document.get("index"),
        )


def existing_run(store: RunStore, run_id: str, workflow: str | None = None) -> Run:
    run = store.read_run(run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id!r} in this database (check the run id and the MongoDB URI)")
    if workflow is not None and run.workflow != workflow:
        raise RunNotFound(f"run {run_id} is a run of workflow {run.workflow!r}, not {workflow!r}")
    return run


def request_cancel(
    store: RunStore, run_id: str, reason: str | None = None, *, workflow: str | None = None
) -> OperationReceipt:
    """Ask for the run to end ``cancelled``: nothing more is dispatched once the orchestrator has
    applied it; attempts already running finish, but their reports change nothing. ``workflow``
    refuses a run of another workflow (the starter function operates its own runs only)."""
    run = existing_run(store, run_id, workflow)
    if run.state not in IN_FLIGHT:
        raise OperationRefused(f"run {run_id} has already ended ({run.state}): nothing to cancel")
    request = StatusEvent(
        run_id=run_id,
        workflow=run.workflow,
        status=StatusName.CANCEL_REQUESTED,
        attempt=run.redrives,
        reason=reason,
    )
    created = store.record_status(request)
    return OperationReceipt(
        run_id=run_id, operation=request.status, sequence=request.attempt, created=created
    )


def request_redrive(store: RunStore, run_id: str, *, workflow: str | None = None) -> OperationReceipt:
    """Ask for a failed or cancelled run to go on from where it stopped, on its own definition
    snapshot: succeeded jobs keep their outputs, the others get new attempts."""
    run = existing_run(store, run_id, workflow)
    if run.state == RunState.RUNNING:
        raise OperationRefused(f"run {run_id} is running: only a failed or cancelled run can be redriven")
    if run.state not in REDRIVABLE:
        raise OperationRefused(
            f"run {run_id} has {run.state}: only a failed or cancelled run can be redriven"
        )
    request = StatusEvent(
        run_id=run_id, workflow=run.workflow, status=StatusName.REDRIVE_REQUESTED, attempt=run.redrives + 1
    )
    created = store.record_status(request)
    return OperationReceipt(
        run_id=run_id, operation=request.status, sequence=request.attempt, created=created
    )


def request_upgrade(
    store: RunStore,
    run_id: str,
    definition: Workflow,
    deployment: Deployment | None,
    *,
    workflow: str | None = None,
) -> OperationReceipt:
    """A redrive onto ``definition`` and ``deployment`` (``redrive --upgrade``): refused with
    every reason when the run cannot move (``runtime.engine.upgrade``). The ended run is moved
    first, by a write guarded by the version read, then the redrive is requested as any other,
    so the redrive dispatches the new versions only."""
    run = existing_run(store, run_id, workflow)
    if run.state not in REDRIVABLE:
        raise OperationRefused(f"run {run_id} is {run.state}: only a failed or cancelled run can be upgraded")
    if _redrive_pending(store, run):
        raise OperationRefused(
            f"run {run_id} has a redrive requested and not applied yet: upgrade it once that has run"
        )
    problems = upgrade_problems(run, definition)
    if problems:
        raise OperationRefused(f"run {run_id} cannot move to the current definition: " + "; ".join(problems))
    moved = run_upgraded(definition, upgraded_jobs(run, definition), deployment)
    if not store.apply_transition(run_id, at_version(run.version) | run_is(run.state), moved):
        raise OperationRefused(f"run {run_id} changed while it was being upgraded: ask again")
    return request_redrive(store, run_id, workflow=workflow)


def _redrive_pending(store: RunStore, run: Run) -> bool:
    if run.state not in REDRIVABLE:
        return False
    request = store.read_status(run.run_id, None, None, StatusName.REDRIVE_REQUESTED, run.redrives + 1)
    return request is not None


def list_runs(
    store: RunStore,
    *,
    workflow: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    deploy_id: str | None = None,
    position: PagePosition | None = None,
) -> list[RunSummary]:
    """Runs newest first (by creation time), filtered by workflow, run state and creation time,
    after the page ``position`` (``PagePosition.after`` the page before); each filter
    combination reads an index in order (``runtime.store.mongo.RUN_INDEXES``)."""
    if status is not None and status not in RunState.__members__.values():
        states = ", ".join(state.value for state in RunState)
        raise RunError(f"unknown run status {status!r}: use one of {states}")
    if limit < 1:
        raise RunError(f"the limit must be at least 1, got {limit}")
    return store.find_runs(workflow, status, since, limit, deploy_id, position)


def run_history(store: RunStore, run_id: str, workflow: str | None = None) -> list[HistoryEntry]:
    """Every status of the run in the order it was recorded, operations included."""
    existing_run(store, run_id, workflow)
    return [
        HistoryEntry(
            date=as_utc(event.date),
            status=event.status.value,
            phase=event.phase,
            job=event.job,
            attempt=event.attempt,
            error=event.error,
            output=event.output,
            reason=event.reason,
            index=event.index,
        )
        for event in store.read_statuses(run_id)
    ]


def wait_for_end(store: RunStore, run_id: str, timeout: float | None, poll: float = 0.5) -> Run | None:
    """The run once it has ended; None when it is still running after ``timeout`` seconds
    (None: wait as long as it takes). An ended run with a redrive requested and not yet applied
    counts as running: it is about to reopen, so ``redrive`` then ``status --wait`` waits for the
    redriven run, not for the failure it came from."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        run = existing_run(store, run_id)
        if run.state not in IN_FLIGHT and not _redrive_pending(store, run):
            return run
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))
