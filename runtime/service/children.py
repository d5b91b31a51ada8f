"""Child workflows at run time: a job with ``workflow: {name, input}`` runs another workflow of
the app as its attempt (docs/spec.md, "Child workflows").

- **Start.** The parent's orchestrator dispatches the attempt like any other, but instead of a
  job function the ``ChildStarter`` port gets a ``ChildStart`` (``child_start``): in the cloud
  the child workflow's starter function, locally the local cloud. ``start_child`` (the starter's
  side) checks the attempt's key, inserts the child run with the id derived from the attempt
  (``<parent>.<job>.<attempt>``, pinned to the child workflow's own versions like any run) and
  records the parent attempt's ``started``. A duplicate or reordered start finds the same run; a
  lost one leaves the attempt without a report, which the reconciler dispatches again.
- **End.** When a child run ends, its orchestrator records the parent attempt's ``success``
  (the child's output) or ``failed`` (``report_to_parent``), signed by the control plane, so the
  parent's orchestrator applies it through its guarded path like a job's own report; a retry is
  a new attempt, so a new child.
- **Cancel.** When a parent is cancelled or ends, its children still running are cancelled
  (``cancel_children``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import jmespath

from runtime import limits
from runtime.definition.model import Workflow
from runtime.documents.children import ChildStart, ParentLink, child_run_id, relinked
from runtime.documents.deployment import Deployment
from runtime.documents.events import JobEvent
from runtime.documents.run import Run, StatusEvent
from runtime.documents.signatures import is_attempt_key
from runtime.engine.fanout import results_read
from runtime.errors import OperationRefused, OutputTooLarge, RunError
from runtime.ports import Outputs, RunStore
from runtime.service.operations import request_cancel, request_redrive
from runtime.service.runs import StartedRun, start_run
from runtime.statuses import ENDED, IN_FLIGHT, REDRIVABLE, JobState, RunState, StatusName

log = logging.getLogger(__name__)

CHILD_FAILED = "ChildWorkflowFailed"
"""The error type of a parent attempt whose child failed (a ``retry.on`` may name it)."""
CHILD_CANCELLED = "ChildWorkflowCancelled"


class ChildInputError(Exception):
    """The child's ``input`` expression cannot be evaluated: the attempt fails with this."""


def child_start(event: JobEvent, outputs: Outputs | None = None) -> ChildStart:
    """The child run a child workflow job's attempt ``event`` starts. ``outputs`` loads the
    outputs kept by reference that its ``input`` reads (None: they read as null)."""
    assert event.child is not None
    expression = event.child.input
    if expression is None:
        child_input = event.input
    else:
        results = dict(event.results) | _read_by_reference(event, expression, outputs)
        try:
            child_input = jmespath.search(expression, {"input": event.input, "results": results})
        except Exception as exc:  # JMESPath's functions raise more than JMESPathError
            raise ChildInputError(f"the input of child workflow {event.child.name!r} failed: {exc}") from exc
    parent = ParentLink(
        run_id=event.run_id,
        workflow=event.workflow,
        phase=event.phase,
        job=event.job,
        attempt=event.attempt,
        index=event.index,
    )
    return ChildStart(
        workflow=event.child.name, input=child_input, parent=parent, attempt_key=event.attempt_key
    )


def _read_by_reference(event: JobEvent, expression: str, outputs: Outputs | None) -> dict[str, Any]:
    """The outputs kept by reference that the child's ``input`` reads, loaded as a ``when``
    reads them: at most ``limits.OUTPUT_READ_MAX_BYTES`` of JSON in all, checked before each is
    loaded; past it the attempt fails saying so."""
    if outputs is None or not event.references or event.child is None:
        return {}
    read = results_read(expression)  # None: it reads results whole
    loaded: dict[str, Any] = {}
    used = 0
    for name, ref in event.references.items():
        if read is not None and name not in read:
            continue
        try:
            loaded[name], size = outputs.load_within(ref, limits.OUTPUT_READ_MAX_BYTES - used)
        except OutputTooLarge as exc:
            raise ChildInputError(
                f"the input of child workflow {event.child.name!r} reads the output "
                f"of {name!r}, {exc.shown_size} bytes of JSON; it may read at most "
                f"{limits.OUTPUT_READ_MAX_BYTES:,} bytes of outputs kept by reference"
            ) from exc
        used += size
    return loaded


def start_child(
    store: RunStore, definition: Workflow, request: ChildStart, deployment: Deployment | None = None
) -> StartedRun:
    """Start the child run ``request`` names, idempotently, then record its parent attempt's
    ``started``. A store that signs statuses accepts the request only with the key its parent
    attempt was dispatched with: nobody else can make a run report to another run's attempt."""
    parent = request.parent
    keys = store.keys
    if keys is not None and not is_attempt_key(
        keys, parent.run_id, parent.job, parent.attempt, parent.index, request.attempt_key
    ):
        raise OperationRefused(
            f"a child run of {parent.run_id}'s job {parent.job!r} (attempt {parent.attempt}) is started "
            "only with the key that attempt was dispatched with"
        )
    if definition.name != request.workflow:
        raise RunError(f"this starter starts runs of {definition.name!r}, not {request.workflow!r}")
    attempt = parent_attempt(parent, StatusName.STARTED)
    try:
        started = _resumed(store, request) or start_run(
            store,
            definition,
            run_id=request.run_id,
            input=request.input,
            deployment=deployment,
            parent=parent,
        )
    except RunError as exc:
        # Refused for good (an input the child's input_schema does not take, the id taken): the
        # attempt fails saying why, rather than being started again by every reconciler pass.
        error = child_failed(request.run_id, request.workflow, f"could not start: {exc}")
        store.record_status(replace(attempt, status=StatusName.FAILED, error=limits.bounded(error)))
        raise
    store.record_status(replace(attempt, request_id=started.run_id))
    return started


def _resumed(store: RunStore, request: ChildStart) -> StartedRun | None:
    """A redriven parent's attempt takes over the child of its attempt before (``resume``): the
    child is moved to the new attempt by a guarded write, then redriven. None when there is no
    such child to take over (it succeeded, or never started): a new child is started."""
    if request.resume is None:
        return None
    child = store.read_run(request.resume)
    parent = request.parent
    if (
        child is None
        or child.parent is None
        or (child.parent.run_id, child.parent.job) != (parent.run_id, parent.job)
    ):
        return None
    if child.parent.attempt != parent.attempt:
        if child.state not in REDRIVABLE or child.parent.attempt > parent.attempt:
            return None
        conditions, changes = relinked(child.parent, parent.attempt)
        if not store.apply_transition(child.run_id, conditions, changes):
            return _resumed(store, request)  # moved meanwhile: look again
    if child.state in REDRIVABLE:
        try:
            request_redrive(store, child.run_id)
        except OperationRefused as exc:  # redriven meanwhile
            log.info("child run %s: %s", child.run_id, exc)
    return StartedRun(run_id=child.run_id, created=False)


def resumable_child(store: RunStore, event: JobEvent) -> str | None:
    """The child run a redriven parent's attempt ``event`` takes over: the child of the attempt
    before, when ``event`` is the job's first attempt since a redrive. None otherwise (a retry
    within a round starts a new child)."""
    if event.attempt < 2 or event.index is not None:
        return None
    run = store.read_run(event.run_id)
    record = None if run is None else run.jobs.get(event.job)
    if run is None or record is None or run.redrives == 0 or record.first_attempt != event.attempt:
        return None
    return child_of(store, event.run_id, event.phase, event.job, event.attempt - 1)


def child_of(store: RunStore, run_id: str, phase: str, job: str, attempt: int) -> str:
    """The child run of ``job``'s ``attempt`` in run ``run_id``: the one its ``started`` names
    (a redriven child keeps its id), else the id derived from the attempt."""
    started = store.read_status(run_id, phase, job, StatusName.STARTED, attempt)
    if started is not None and started.request_id:
        return started.request_id
    return child_run_id(run_id, job, attempt)


def child_output(run: Run, load: Any) -> Any:
    """What a succeeded child gives its parent job: its spec's ``output`` over ``{input,
    results}``, or the results of its last phase's jobs. ``load`` reads an output kept by
    reference."""
    results = {
        name: load(run.references[name]) if name in run.references else output
        for name, output in run.outputs.items()
    }
    if run.definition.output is not None:
        return jmespath.search(run.definition.output, {"input": run.input, "results": results})
    last = run.definition.phase_order()[-1]
    return {job.name: results.get(job.name) for job in last.jobs}


def parent_attempt(parent: ParentLink, status: StatusName) -> StatusEvent:
    """The parent attempt's ``status``, for a child run linked to it by ``parent``."""
    return StatusEvent(
        run_id=parent.run_id,
        workflow=parent.workflow,
        status=status,
        phase=parent.phase,
        job=parent.job,
        attempt=parent.attempt,
        index=parent.index,
    )


def child_failed(run_id: str, workflow: str, why: str) -> str:
    """The error of a parent attempt whose child ``run_id`` of ``workflow`` failed (``why``)."""
    return limits.bounded(f"{CHILD_FAILED}: child run {run_id} of workflow {workflow!r} {why}")


def parent_failure(run: Run, error: str | None = None) -> StatusEvent:
    """The parent attempt's failure, for a child ``run`` that has ended other than succeeded
    (or whose output failed: ``error``)."""
    parent = run.parent
    assert parent is not None
    if error is None and run.state == RunState.CANCELLED:
        cancelled = run.error or "cancelled"
        error = f"{CHILD_CANCELLED}: child run {run.run_id} of workflow {run.workflow!r} was {cancelled}"
    elif error is None:
        error = child_failed(run.run_id, run.workflow, f"failed: {run.error}")
    return replace(parent_attempt(parent, StatusName.FAILED), error=limits.bounded(error))


def record_output(store: RunStore, parent: ParentLink, run_id: str, output: Any) -> bool:
    """Record the parent attempt's success with its child ``run_id``'s ``output``, kept by
    reference when it is too large for an event."""
    succeeded = parent_attempt(parent, StatusName.SUCCESS)
    if limits.json_bytes(output) > limits.OUTPUT_INLINE_MAX_BYTES:
        ref = store.items().outputs.store(f"{run_id}/output", output, parent.workflow)
        return store.record_status(replace(succeeded, output_ref=ref))
    return store.record_status(replace(succeeded, output=output))


def report_to_parent(store: RunStore, run_id: str) -> bool:
    """Record the parent attempt's end for child run ``run_id`` if it has ended (safe to repeat:
    an attempt has one terminal report). Whether a report was recorded now."""
    run = store.read_run(run_id)
    if run is None or run.parent is None or run.state not in ENDED:
        return False
    if run.state != RunState.SUCCEEDED:
        return store.record_status(parent_failure(run))
    try:
        output = child_output(run, store.items().outputs.load)
    except Exception as exc:  # as for 'when': JMESPath raises more than its errors
        error = f"{CHILD_FAILED}: the output of child run {run_id} failed: {exc}"
        return store.record_status(parent_failure(run, error))
    return record_output(store, run.parent, run_id, output)


def child_jobs(definition: Workflow) -> list[str]:
    """The jobs of ``definition`` that run child workflows."""
    return [job.name for job in definition.jobs() if job.child_workflow is not None]


def cancel_children(store: RunStore, run_id: str, reason: str) -> int:
    """Cancel the children of run ``run_id`` that are still running: those of its child workflow
    jobs' attempts the run no longer waits for (the run was cancelled or has ended). How many
    cancels were requested now."""
    run = store.read_run(run_id)
    if run is None:
        return 0
    requested = 0
    for name in child_jobs(run.definition):
        record = run.jobs[name]
        waiting = record.state == JobState.DISPATCHED and run.state == RunState.RUNNING
        if record.attempt == 0 or waiting or record.state not in (JobState.DISPATCHED, JobState.CANCELLED):
            continue
        child = store.read_run(child_of(store, run_id, run.definition.job(name).phase, name, record.attempt))
        if child is None or child.state not in IN_FLIGHT:
            continue
        try:
            requested += request_cancel(store, child.run_id, reason).created
        except RunError as exc:  # it ended meanwhile
            log.info("child run %s was not cancelled: %s", child.run_id, exc)
    return requested
