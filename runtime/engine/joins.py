"""When a job starts, is skipped, and what it gets: readiness, the ``join`` rules, ``when``, and
the ``results`` of its event. Pure; the engine's ``plan_progress`` applies these.

- A job is ready once every job in its ``after`` has finished: succeeded, skipped, failed or
  ``upstream_failed`` (a job of an earlier phase has finished before this phase starts); with an
  early join (``one_success``, ``one_failed``) as soon as one of them has ended so.
- Its ``join`` (``model.JOINS``) then says whether it starts; else it is ``upstream_failed`` when
  one of them failed (``one_failed`` and ``all_failed`` excepted: they wanted a failure), else
  ``skipped``. A ``when`` is evaluated once the join holds; false skips the job.
- A failure is **caught** when the join of a job after it that runs after a failure
  (``model.CATCHING_JOINS``) held, directly or past jobs that are ``upstream_failed`` because of
  it: it neither fails the run nor starts ``on_failure``. A failed
  job that no job after it could catch (``catchable``) fails the run at once, as before; one that
  could waits for them (``uncaught``), and fails the run once none did.
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
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jmespath

from runtime import limits
from runtime.definition.model import (
    CATCHING_JOINS,
    EARLY_JOINS,
    EXIT_PHASE,
    HANDLERS_PHASE,
    Job,
    Phase,
    Workflow,
)
from runtime.definition.model_limits import AttemptLimits
from runtime.documents.events import JobEvent
from runtime.documents.outputs import run_output_ref
from runtime.documents.run import Run, StatusEvent
from runtime.engine import conditions, fanout, retry
from runtime.statuses import DONE, FAILED_STATES, JobState, StatusName

EVENT_ENVELOPE_BYTES = 16 * 1024
"""What a job event holds besides the run input and the outputs: its names, the attempt's key,
an item and its index, the failure a handler gets (bounded by ``limits``)."""

FINISHED = DONE | FAILED_STATES
"""Job states that let the jobs after a job go on, and its phase complete."""


def ready_jobs(phase: Phase, states: Mapping[str, JobState]) -> list[Job]:
    """The jobs of ``phase`` still pending whose ``after`` jobs have all finished, or (an early
    join) one of which has ended as the join asks: they start or are skipped now."""
    return [
        job
        for job in phase.jobs
        if states[job.name] == JobState.PENDING
        and (
            all(states[name] in FINISHED for name in job.after)
            or (job.join in EARLY_JOINS and join_outcome(job, states) is None)
        )
    ]


def phase_finished(phase: Phase, states: Mapping[str, JobState]) -> bool:
    return all(states[job.name] in FINISHED for job in phase.jobs)


def join_outcome(job: Job, states: Mapping[str, JobState]) -> JobState | None:
    """None when the ``after`` jobs ended as ``job``'s join needs to start it; else the state the
    job takes: ``upstream_failed`` when one of them failed and the join did not want a failure,
    ``skipped`` otherwise. Every ``after`` job has finished, except for an early join that holds."""
    ended = [states[name] for name in job.after]
    succeeded = sum(state == JobState.SUCCEEDED for state in ended)
    failed = sum(state in FAILED_STATES for state in ended)
    holds = {
        "all": succeeded == len(ended),
        "any": succeeded > 0 or not ended,
        "all_done": True,
        "one_success": succeeded > 0 or not ended,
        "one_failed": failed > 0 or not ended,
        "all_failed": failed == len(ended),
        "none_failed": failed == 0,
        "none_failed_min_one_success": failed == 0 and (succeeded > 0 or not ended),
    }[job.join]
    if holds:
        return None
    if failed and job.join not in ("one_failed", "all_failed"):
        return JobState.UPSTREAM_FAILED
    return JobState.SKIPPED


def depends_outcome(
    job: Job, run: Run, states: Mapping[str, JobState], results: Mapping[str, Any]
) -> JobState | None:
    """``join_outcome`` for a job with ``depends``: its expression over ``{"jobs": {<after job>:
    {state, error, type, output}}}`` (every one finished). Raises whatever JMESPath raises for an
    expression it cannot evaluate."""
    assert job.depends is not None
    jobs: dict[str, dict[str, Any]] = {}
    for name in job.after:
        state = states[name]
        error = run.jobs[name].error if state == JobState.FAILED else None
        jobs[name] = {
            "state": state.value,
            "error": error,
            "type": None if error is None else retry.error_type(error),
            "output": results.get(name) if state == JobState.SUCCEEDED else None,
        }
    if is_truthy(jmespath.search(job.depends, {"jobs": jobs})):
        return None
    if any(states[name] in FAILED_STATES for name in job.after):
        return JobState.UPSTREAM_FAILED
    return JobState.SKIPPED


def failure_allowed(job: Job, error: str | None) -> bool:
    """Whether ``job``'s ``allow_failure`` lets the run go on after a final failure with ``error``."""
    return job.allows_failure(retry.error_type(error or ""))


def accepts_failures(job: Job) -> bool:
    """Whether ``job`` may run although a job in its ``after`` failed, and so catch that failure."""
    return job.depends is not None or job.join in CATCHING_JOINS


def join_holds(job: Job, states: Mapping[str, JobState]) -> bool:
    """Whether the ``after`` jobs ended as ``job``'s join needs to start it."""
    return join_outcome(job, states) is None


FAILS_ON_ANY_FAILURE = ("all", "none_failed", "none_failed_min_one_success")
"""Joins that can no longer hold once one job in ``after`` has failed."""


def upstream_failed(definition: Workflow, states: Mapping[str, JobState]) -> list[str]:
    """The pending workflow jobs a failure has decided: one they wait for failed (or was decided
    so) and their join can no longer hold, whatever the others still do. What a run that fails
    records of the jobs it will not run because of that failure."""
    states = dict(states)
    decided: list[str] = []
    changed = True
    while changed:
        changed = False
        for phase in definition.phases:
            for job in phase.jobs:
                if states[job.name] != JobState.PENDING or not job.after or job.depends is not None:
                    continue
                failed = any(states[name] in FAILED_STATES for name in job.after)
                finished = all(states[name] in FINISHED for name in job.after)
                if (failed and job.join in FAILS_ON_ANY_FAILURE) or (
                    finished and join_outcome(job, states) == JobState.UPSTREAM_FAILED
                ):
                    states[job.name] = JobState.UPSTREAM_FAILED
                    decided.append(job.name)
                    changed = True
    return decided


def _children(definition: Workflow, name: str) -> list[Job]:
    return [job for phase in definition.phases for job in phase.jobs if name in job.after]


def catchable(definition: Workflow, name: str) -> bool:
    """Whether a failure of job ``name`` may be caught: a job after it has a join that runs after
    a failure, or would be ``upstream_failed`` and has one after it that could catch that."""
    return any(
        accepts_failures(child) or catchable(definition, child.name) for child in _children(definition, name)
    )


def caught(definition: Workflow, name: str, states: Mapping[str, JobState]) -> bool | None:
    """Whether the failure of ``name`` has been caught (True: a job after it whose join runs after
    a failure held), cannot be any more (False), or may still be (None: a job after it that could
    catch it has not been decided)."""
    undecided = False
    for child in _children(definition, name):
        state = states[child.name]
        if state == JobState.PENDING:
            undecided = undecided or accepts_failures(child) or catchable(definition, child.name)
        elif state == JobState.UPSTREAM_FAILED:
            below = caught(definition, child.name, states)
            if below:
                return True
            undecided = undecided or below is None
        elif child.depends is not None or (
            child.join in CATCHING_JOINS and join_outcome(child, states) is None
        ):
            return True  # its join (or depends) held with the failure: it ran, or 'when' said no
    return None if undecided else False


def uncaught(run: Run, states: Mapping[str, JobState], ended: bool) -> str | None:
    """A workflow job whose failure fails the run: it failed (without ``allow_failure``) and no
    job after it caught the failure, nor can any more (with ``ended``, the run has nothing left
    to run: a failure still waiting to be caught is not). None while the failure handlers run."""
    if run.failure is not None or run.exit is not None:
        return None
    for phase in run.definition.phases:
        for job in phase.jobs:
            if states[job.name] != JobState.FAILED or failure_allowed(job, run.jobs[job.name].error):
                continue
            caught_now = caught(run.definition, job.name, states)
            if caught_now is False or (caught_now is None and ended):
                return job.name
    return None


def job_results(run: Run, job: Job, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The ``results`` of ``job``'s event, from the outputs of the jobs that succeeded: its
    ``after`` jobs', and with ``results: earlier`` the earlier phases' too (a failure handler's:
    every job's)."""
    if job.phase in (HANDLERS_PHASE, EXIT_PHASE):
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
    if job.phase in (HANDLERS_PHASE, EXIT_PHASE):
        return dict(outputs)
    return _after_and_earlier(run, job, outputs)


def run_outcome(run: Run) -> dict[str, Any] | None:
    """What an exit handler is told of the run's end: ``{"status", "error", "failures"}``, where
    ``failures`` holds every job that failed (its error, the error's type and the attempt)."""
    if run.exit is None:
        return None
    failures = {
        job.name: _failure_of(run, job.name)
        for job in run.definition.jobs()
        if job.phase != EXIT_PHASE and run.jobs[job.name].state == JobState.FAILED
    }
    return {"status": run.exit.status, "error": run.exit.error, "failures": failures}


_RUN_FAILED_BY = re.compile(r"job '[^']*' failed (?:after \d+ attempt\(s\)|with \S+, which [^:]*): ")
"""How ``progress.plan_failure`` words the error of a job that failed the run, before the job's
own error: the type is read from what follows."""


def _failure_of(run: Run, name: str) -> dict[str, Any]:
    record = run.jobs[name]
    error = record.error or "the job failed"
    own = _RUN_FAILED_BY.sub("", error, count=1) if _RUN_FAILED_BY.match(error) else error
    return {"error": error, "type": retry.error_type(own), "attempt": record.attempt}


def after_failures(run: Run, job: Job) -> dict[str, dict[str, Any]]:
    """The jobs in ``job``'s ``after`` that failed: job -> ``{"error", "type", "attempt"}``."""
    return {name: _failure_of(run, name) for name in job.after if run.jobs[name].state == JobState.FAILED}


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
    outcome = run_outcome(run) if job.phase == EXIT_PHASE else None
    return is_truthy(conditions.evaluate(job.when, run.input, results, after_failures(run, job), outcome))


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
        failures=after_failures(run, job),
        run=run_outcome(run) if job.phase == EXIT_PHASE else None,
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
        callback=job.callback is not None,
        child=job.child_workflow,
        limits=attempt_limits(run, job),
    )


def attempt_limits(run: Run, job: Job) -> AttemptLimits | None:
    """What the dispatch of ``job``'s attempts waits for; None: nothing (most jobs)."""
    if job.concurrency is None and job.rate_limit is None:
        return None
    record = run.jobs.get(job.name)
    return AttemptLimits(
        concurrency=job.concurrency,
        rate_limit=job.rate_limit,
        priority=run.priority,
        round=0 if record is None or job.for_each is None else record.attempt,
    )


def waits_until(job: Job, now: datetime) -> datetime | None:
    """When a wait, an approval or an event job, or a callback job without code, that starts
    ``now`` fires its timer; None for a job with a function to run."""
    if job.wait is not None:
        return now + timedelta(seconds=job.wait)
    if job.approval is not None:
        return now + timedelta(seconds=job.approval.timeout)
    if job.event is not None:
        return now + timedelta(seconds=job.event.timeout)
    if job.callback is not None and not job.callback.runs_code:
        return now + timedelta(seconds=job.callback.timeout)
    return None


def callback_awaited(run: Run, job: Job, attempt: int) -> StatusEvent:
    """The record that a callback job without code waits for its token's completion (the token
    is not in it: operators make it with the control plane's key)."""
    return StatusEvent(
        run_id=run.run_id,
        workflow=run.workflow,
        status=StatusName.CALLBACK_AWAITED,
        phase=job.phase,
        job=job.name,
        attempt=attempt,
    )


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
