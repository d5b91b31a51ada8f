"""When a job starts, is skipped, and what it gets: readiness, the ``join`` rules, ``when``, and
the ``results`` of its event. Pure; the engine's ``plan_progress`` applies these.

- A job is ready once every job in its ``after`` has finished: succeeded, skipped, or failed
  (only a job with ``allow_failure`` fails and lets the run go on; a job of an earlier phase has
  finished before this phase starts).
- ``join: all`` starts it when all of them succeeded, ``join: any`` when at least one did; else it
  is skipped. A ``when`` is evaluated once the join holds; false skips the job.
- ``results`` holds the outputs of the jobs in ``after`` that succeeded (with ``results:
  earlier``, and of every job of the earlier phases: what its ``when`` reads); a failure
  handler's holds those of every job that succeeded. A ``when`` also sees the outputs of earlier
  phases. Outputs that would make an event too large for a Lambda invocation travel
  as references to the run document instead (``event_references``), which the wrapper loads.
- A job without code that starts waits instead of being dispatched: a ``wait`` job for its
  timer, an ``approval`` job for an answer (or its timeout), announced by ``approval_requested``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jmespath

from runtime import limits
from runtime.definition.model import HANDLERS_PHASE, Job, Phase
from runtime.documents.events import JobEvent
from runtime.documents.outputs import run_output_ref
from runtime.documents.run import Run, StatusEvent
from runtime.engine import conditions, fanout
from runtime.statuses import DONE, JobState, StatusName

EVENT_ENVELOPE_BYTES = 16 * 1024
"""What a job event holds besides the run input and the outputs: its names, the attempt's key,
an item and its index, the failure a handler gets (bounded by ``limits``)."""

FINISHED = DONE | {JobState.FAILED}
"""Job states that let the jobs after a job go on, and its phase complete."""


def ready_jobs(phase: Phase, states: Mapping[str, JobState]) -> list[Job]:
    """The jobs of ``phase`` still pending whose ``after`` jobs have all finished: they start or
    are skipped now."""
    return [
        job
        for job in phase.jobs
        if states[job.name] == JobState.PENDING and all(states[name] in FINISHED for name in job.after)
    ]


def phase_finished(phase: Phase, states: Mapping[str, JobState]) -> bool:
    return all(states[job.name] in FINISHED for job in phase.jobs)


def join_holds(job: Job, states: Mapping[str, JobState]) -> bool:
    """Whether the ``after`` jobs (all finished) ended as ``job``'s join needs to start it."""
    succeeded = [states[name] == JobState.SUCCEEDED for name in job.after]
    if not succeeded:
        return True
    return any(succeeded) if job.join == "any" else all(succeeded)


def job_results(run: Run, job: Job, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The ``results`` of ``job``'s event, from the outputs of the jobs that succeeded: its
    ``after`` jobs', and with ``results: earlier`` the earlier phases' too (a failure handler's:
    every job's)."""
    if job.phase == HANDLERS_PHASE:
        return dict(outputs)
    if job.results == "earlier":
        return _after_and_earlier(run, job, outputs)
    return {name: outputs[name] for name in job.after if name in outputs}


def _after_and_earlier(run: Run, job: Job, outputs: Mapping[str, Any]) -> dict[str, Any]:
    seen = (*run.definition.earlier_jobs(job.phase), *job.after)
    return {name: outputs[name] for name in seen if name in outputs}


def condition_results(run: Run, job: Job, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """What ``job``'s ``when`` (and ``for_each``) reads as ``results``: the outputs of its
    ``after`` jobs and of the earlier phases (a failure handler's: every job's), with the
    outputs kept by reference that the orchestrator loaded for it."""
    outputs = {**outputs, **run.loaded_outputs}
    if job.phase == HANDLERS_PHASE:
        return dict(outputs)
    return _after_and_earlier(run, job, outputs)


def event_references(run: Run, results: Mapping[str, Any], budget: int) -> dict[str, str]:
    """Which of ``results`` (held in the run document) travel as references to it, largest
    first, so that the rest fit ``budget`` bytes of JSON: none while they all fit."""
    sizes = {name: limits.json_bytes(value) for name, value in results.items()}
    moved: dict[str, str] = {}
    total = sum(sizes.values())
    for name in sorted(sizes, key=lambda name: sizes[name], reverse=True):
        if total <= budget:
            break
        moved[name] = run_output_ref(run.run_id, name)
        total -= sizes[name]
    return moved


def is_truthy(value: Any) -> bool:
    """JMESPath's truthiness: false, null, the empty string, array and object are false; every
    other value, 0 and 0.0 included, is true (Python's would make 0 false)."""
    if value is None or isinstance(value, bool):
        return value is True
    return not (isinstance(value, (str, list, dict)) and len(value) == 0)


def when_holds(job: Job, run: Run, results: Mapping[str, Any]) -> bool:
    """The job's ``when`` against ``{"input", "results"}``; true for a job without one. Raises
    whatever JMESPath raises for a condition that cannot be evaluated, ``MissingField`` for one
    that reads a field an output does not have (``runtime.engine.conditions``), and
    ``OutputUnreadable`` for one that reads an output too large to load."""
    if job.when is None:
        return True
    fanout.require_readable(job.when, results)
    return is_truthy(conditions.evaluate(job.when, run.input, results))


WAITED_UNTIL = "waited_until"
"""The output of a ``wait: {until}`` job: the time it waited until (ISO 8601, UTC)."""

_TIME_EXAMPLE = "e.g. '2026-12-07T09:00:00Z' or '2026-12-07T10:00:00+01:00'"


def wait_until(job: Job, run: Run, results: Mapping[str, Any]) -> datetime:
    """When a ``wait: {until}`` job that becomes ready fires: the time its expression gives
    against ``{"input", "results"}``, in UTC. Raises ``ValueError`` naming the value when it is
    not an ISO 8601 time with its UTC offset, and what ``when_holds`` raises."""
    assert job.wait_until is not None
    fanout.require_readable(job.wait_until, results)
    value = jmespath.search(job.wait_until, {"input": run.input, "results": dict(results)})
    shown = repr(value) if isinstance(value, str) else json.dumps(value)
    if not isinstance(value, str):
        raise ValueError(f"{job.wait_until} is {shown}, not an ISO 8601 time ({_TIME_EXAMPLE})")
    try:
        time = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{job.wait_until} is {shown}, not an ISO 8601 time ({_TIME_EXAMPLE})") from None
    if time.tzinfo is None:
        raise ValueError(f"{job.wait_until} is {shown}, which has no UTC offset ({_TIME_EXAMPLE})")
    return time.astimezone(UTC)


def job_event(run: Run, job: Job, attempt: int, outputs: Mapping[str, Any] | None = None) -> JobEvent:
    """The event ``job``'s ``attempt`` is invoked with (``outputs``: the run's, when known)."""
    failure = run.failure.to_event() if run.failure is not None and job.phase == HANDLERS_PHASE else None
    results = job_results(run, job, run.outputs if outputs is None else outputs)
    references = {name: ref for name, ref in run.references.items() if name in results}
    inline = {name: value for name, value in results.items() if name not in references}
    # The run input and the envelope take their share of the Lambda payload; the outputs the
    # rest, else the largest go by reference to the run document.
    budget = limits.JOB_EVENT_MAX_BYTES - limits.json_bytes(run.input) - EVENT_ENVELOPE_BYTES
    moved = event_references(run, inline, budget)
    references |= moved
    results = {name: None if name in moved else value for name, value in results.items()}
    return JobEvent(
        run_id=run.run_id,
        workflow=run.workflow,
        phase=job.phase,
        job=job.name,
        attempt=attempt,
        input=run.input,
        results=results,
        failure=failure,
        references=references,
        function=None if run.deployment is None else run.deployment.function_of(job.name),
    )


def waits_until(job: Job, now: datetime) -> datetime | None:
    """When a wait or an approval job that starts ``now`` fires its timer; None for a job with a
    function to run."""
    if job.wait is not None:
        return now + timedelta(seconds=job.wait)
    if job.approval is not None:
        return now + timedelta(seconds=job.approval.timeout)
    return None


def approval_requested(run: Run, job: Job, attempt: int) -> StatusEvent:
    """The record that an approval job waits for an answer: what the notifier tells people."""
    return StatusEvent(
        run_id=run.run_id,
        workflow=run.workflow,
        status=StatusName.APPROVAL_REQUESTED,
        phase=job.phase,
        job=job.name,
        attempt=attempt,
        reason=None if job.approval is None else job.approval.message,
    )
