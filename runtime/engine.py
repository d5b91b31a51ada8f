"""The engine's decisions, without I/O: given a run document and a status event, what changes,
which job attempts are dispatched and which run statuses are recorded.

Every ``Transition`` carries the conditions it was computed under; the store applies it only if
they still hold, so concurrent handlers never overwrite each other (one of them wins, the others
re-read and decide again). Everything a transition causes is stamped with the key of the event
that caused it, so a redelivered event can finish what a crashed handler began.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jmespath
import jmespath.exceptions

from runtime.definition.model import Job, Phase, Workflow
from runtime.events import JobEvent, StatusEvent

PENDING, DISPATCHED, SUCCEEDED, FAILED, SKIPPED = "pending", "dispatched", "succeeded", "failed", "skipped"
DONE = frozenset({SUCCEEDED, SKIPPED})
"""Job states that count as finished for a phase and for the jobs that come after."""

RUNNING, RUN_SUCCEEDED, RUN_FAILED = "running", "succeeded", "failed"


@dataclass(frozen=True, kw_only=True)
class JobState:
    state: str = PENDING
    attempt: int = 0
    output: Any = None
    error: str | None = None
    caused_by: str | None = None
    """Key of the event whose handling dispatched or skipped this job (at this attempt)."""
    claimed_at: datetime | None = None
    """When that handling decided to dispatch this attempt."""


@dataclass(frozen=True, kw_only=True)
class Run:
    """The engine's typed view of a run document."""

    run_id: str
    definition: Workflow
    input: Any
    status: str
    phase: str
    jobs: Mapping[str, JobState]
    completed_by: Mapping[str, str] = field(default_factory=dict)
    """Phase name -> key of the event that completed it."""
    finished_by: str | None = None
    error: str | None = None
    version: int = 0
    """Incremented by every write; a write planned from this view is guarded by it."""

    @property
    def outputs(self) -> dict[str, Any]:
        """Outputs of the jobs that succeeded: what their dependents get as ``results``."""
        return {name: job.output for name, job in self.jobs.items() if job.state == SUCCEEDED}

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Run:
        return cls(
            run_id=document["_id"],
            definition=Workflow.from_document(document["definition"]),
            input=document.get("input"),
            status=document["status"],
            phase=document["phase"],
            jobs={
                name: JobState(
                    state=state["state"],
                    attempt=state.get("attempt", 0),
                    output=state.get("output"),
                    error=state.get("error"),
                    caused_by=state.get("causedBy"),
                    claimed_at=state.get("claimedAt"),
                )
                for name, state in document["jobs"].items()
            },
            completed_by={name: p["completedBy"] for name, p in (document.get("phases") or {}).items()},
            finished_by=document.get("finishedBy"),
            error=document.get("error"),
            version=document.get("version", 0),
        )


def new_run_document(definition: Workflow, run_id: str, run_input: Any, now: datetime) -> dict[str, Any]:
    """The run document ``start_run`` inserts: every job pending, the first phase current."""
    first = definition.phase_order()[0]
    return {
        "_id": run_id,
        "workflow": definition.name,
        "definition": definition.to_document(),
        "input": run_input,
        "status": RUNNING,
        "phase": first.name,
        "jobs": {job.name: {"state": PENDING, "attempt": 0} for job in definition.jobs()},
        "phases": {},
        "finishedBy": None,
        "error": None,
        "version": 0,
        "createdAt": now,
        "updatedAt": now,
    }


@dataclass(frozen=True, kw_only=True)
class RunStatus:
    """A run-level status the engine records in ``statuses`` (``job`` is null)."""

    status: str
    phase: str | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class Transition:
    conditions: dict[str, Any]
    """Field -> value the run document must still have for ``changes`` to apply."""
    changes: dict[str, Any]
    dispatches: tuple[JobEvent, ...] = ()
    records: tuple[RunStatus, ...] = ()


LAMBDA_RETRY_DELAY = timedelta(seconds=50)
"""Lambda retries a failed asynchronous invocation a minute later at the earliest (a little less
here, for clock differences): whatever repeats sooner is a duplicate, not a retry after a crash.
Both the orchestrator's replay and the job wrapper's takeover tell the two apart by it."""


def age(then: datetime, now: datetime) -> timedelta:
    """How long ago ``then`` was; a naive ``then`` (a client without tz_aware) is UTC."""
    return now - then.replace(tzinfo=then.tzinfo or UTC)


def record_success(run: Run, job: str, output: Any) -> Run:
    """The run as it is once ``job``'s current attempt has succeeded with ``output``."""
    return replace(run, jobs={**run.jobs, job: replace(run.jobs[job], state=SUCCEEDED, output=output)})


def _condition_holds(job: Job, run: Run, results: Mapping[str, Any]) -> bool:
    """JMESPath truthiness: false, null and empty strings, lists and objects are false."""
    if job.when is None:
        return True
    value = jmespath.search(job.when, {"input": run.input, "results": dict(results)})
    return value not in (False, None, "", [], {})


def _job_event(run: Run, phase: Phase, job: Job, attempt: int, outputs: Mapping[str, Any]) -> JobEvent:
    return JobEvent(
        run_id=run.run_id,
        workflow=run.definition.name,
        phase=phase.name,
        job=job.name,
        attempt=attempt,
        input=run.input,
        results={name: outputs.get(name) for name in job.after},
    )


def plan_progress(run: Run, key: str, now: datetime) -> Transition | None:
    """Dispatch or skip every job whose predecessors are done, complete the phase when all its
    jobs are done, start the next one, finish the run after the last. None: nothing to do."""
    if run.status != RUNNING:
        return None
    states = {name: job.state for name, job in run.jobs.items()}
    outputs = run.outputs
    conditions: dict[str, Any] = {"status": RUNNING, "phase": run.phase}
    changes: dict[str, Any] = {}
    dispatches: list[JobEvent] = []
    records: list[RunStatus] = []
    phase = run.definition.phase(run.phase)
    while True:
        settled = False
        while not settled:
            settled = True
            for job in phase.jobs:
                if states[job.name] != PENDING or any(states[name] not in DONE for name in job.after):
                    continue
                settled = False
                conditions[f"jobs.{job.name}.state"] = PENDING
                results = {name: outputs.get(name) for name in job.after}
                try:
                    runs = all(states[name] == SUCCEEDED for name in job.after) and _condition_holds(
                        job, run, results
                    )
                except Exception as exc:  # JMESPath's functions raise more than JMESPathError
                    # A condition that cannot be evaluated fails the run rather than the handler:
                    # raising would fail every redelivery of this event and the run would hang.
                    # Nothing decided in this pass is kept: a failed run dispatches nothing more.
                    return _fail_run(
                        key,
                        {"status": RUNNING, "phase": run.phase, f"jobs.{job.name}.state": PENDING},
                        job.name,
                        f"the 'when' of {job.name!r} failed: {exc}",
                    )
                states[job.name] = DISPATCHED if runs else SKIPPED
                changes[f"jobs.{job.name}"] = {
                    "state": states[job.name],
                    "attempt": 1 if runs else 0,
                    "causedBy": key,
                    "claimedAt": now,
                }
                if runs:
                    dispatches.append(_job_event(run, phase, job, 1, outputs))
        if not all(states[job.name] in DONE for job in phase.jobs):
            break
        changes[f"phases.{phase.name}"] = {"completedBy": key}
        records.append(RunStatus(status="phase_completed", phase=phase.name))
        following = run.definition.next_phase(phase.name)
        if following is None:
            changes.update(status=RUN_SUCCEEDED, finishedBy=key)
            records.append(RunStatus(status="workflow_succeeded"))
            break
        changes["phase"] = following.name
        phase = following
    if not changes:
        return None
    return Transition(
        conditions=conditions, changes=changes, dispatches=tuple(dispatches), records=tuple(records)
    )


def _fail_run(key: str, conditions: dict[str, Any], job: str, error: str) -> Transition:
    changes = {
        f"jobs.{job}.state": FAILED,
        f"jobs.{job}.error": error,
        "status": RUN_FAILED,
        "finishedBy": key,
        "error": error,
    }
    return Transition(
        conditions=conditions, changes=changes, records=(RunStatus(status="workflow_failed", error=error),)
    )


def plan_failure(run: Run, event: StatusEvent, now: datetime) -> Transition | None:
    """Retry the job with its next attempt, or fail it and, while the run is running, the run.
    None when the failure is stale or was handled before."""
    assert event.job is not None
    state = run.jobs.get(event.job)
    if state is None or state.state != DISPATCHED or state.attempt != event.attempt:
        return None
    job = run.definition.job(event.job)
    conditions: dict[str, Any] = {
        f"jobs.{job.name}.state": DISPATCHED,
        f"jobs.{job.name}.attempt": event.attempt,
    }
    error = event.error or "the job failed without saying why"
    if run.status == RUNNING:
        conditions["status"] = RUNNING
        if event.attempt < job.max_attempts:
            return Transition(
                conditions=conditions,
                changes={
                    f"jobs.{job.name}.attempt": event.attempt + 1,
                    f"jobs.{job.name}.causedBy": event.key,
                    f"jobs.{job.name}.claimedAt": now,
                    f"jobs.{job.name}.error": error,
                },
                dispatches=(
                    _job_event(run, run.definition.phase(job.phase), job, event.attempt + 1, run.outputs),
                ),
            )
        message = f"job {job.name!r} failed after {event.attempt} attempt(s): {error}"
        return _fail_run(event.key, conditions, job.name, message)
    return Transition(
        conditions=conditions, changes={f"jobs.{job.name}.state": FAILED, f"jobs.{job.name}.error": error}
    )


def replay(
    run: Run, key: str, now: datetime, redispatch_after: timedelta
) -> tuple[tuple[JobEvent, ...], tuple[RunStatus, ...]]:
    """What the handling of event ``key`` caused and may not have finished before a crash: the
    attempts it dispatched that are still in flight, and the run statuses it recorded. Both are
    safe to repeat: the job wrapper runs an attempt once, a status report is unique. Once the run
    has ended nothing is dispatched again, and a dispatch is repeated only once its claim is
    ``redispatch_after`` old: a redelivery sooner than that is a duplicate of a handling that is
    most likely dispatching right now (Lambda retries a crashed handler a minute later)."""
    outputs = run.outputs
    dispatches = tuple(
        _job_event(run, run.definition.phase(job.phase), job, state.attempt, outputs)
        for job in run.definition.jobs()
        if (state := run.jobs[job.name]).caused_by == key
        and state.state == DISPATCHED
        and run.status == RUNNING
        and (state.claimed_at is None or age(state.claimed_at, now) >= redispatch_after)
    )
    records = [
        RunStatus(status="phase_completed", phase=p) for p, by in run.completed_by.items() if by == key
    ]
    if run.finished_by == key:
        status = "workflow_succeeded" if run.status == RUN_SUCCEEDED else "workflow_failed"
        records.append(RunStatus(status=status, error=run.error))
    return dispatches, tuple(records)
