"""Answering an approval job: ``approve`` and ``reject`` record the answer as a status of the
waiting attempt (``approved`` / ``rejected``), which the orchestrator applies like any other
event; the engine decides (``runtime.engine.timers.plan_answer``) and the answer or the timeout applied
first wins. An answer the run cannot take now is refused here, clearly, before anything is
recorded. The CLI and the starter function call these.

Standard library and the store port only: the starter function imports this inside Lambda.
"""

from __future__ import annotations

import json
from typing import Any

from runtime import limits
from runtime.documents.outputs import not_stored_as_is
from runtime.documents.run import StatusEvent
from runtime.errors import OperationRefused, RunNotFound
from runtime.ports import RunStore
from runtime.service.operations import OperationReceipt
from runtime.statuses import JobState, RunState, StatusName


def approval_commands(run_id: str, job: str) -> tuple[str, str]:
    """The two commands that answer an approval (what the notifier tells people)."""
    return (
        f"python -m cdk_app approve {run_id} {job} --output '{{}}'",
        f"python -m cdk_app reject {run_id} {job} --reason '...'",
    )


def _check_answer_output(run_id: str, job: str, output: Any) -> None:
    """An approval's output travels as it is, in its status (through the Atlas trigger and an
    EventBridge event) and in the run document: JSON within ``limits.OUTPUT_INLINE_MAX_BYTES``,
    with field names MongoDB takes and integers JavaScript holds. A job's output past those is
    kept by reference by the job wrapper; an answer's is refused here, before anything is recorded."""
    check_output(output, f"the output of the answer to job {job!r} of run {run_id}", "an answer")


def check_output(output: Any, where: str, what: str) -> None:
    """``output`` (``where``, carried by ``what``) is JSON a status carries as it is: refused
    here, before anything is recorded, when it is not."""
    try:
        size = len(json.dumps(output, allow_nan=False).encode())
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise OperationRefused(f"{where} is not JSON: {exc}") from None
    if size > limits.OUTPUT_INLINE_MAX_BYTES:
        raise OperationRefused(
            f"{where} is {size:,} bytes of JSON; {what} carries at most "
            f"{limits.OUTPUT_INLINE_MAX_BYTES:,} (it travels in an EventBridge event): record a "
            "reference to where the data is instead"
        )
    problem = not_stored_as_is(output)
    if problem is not None:
        raise OperationRefused(f"{where} cannot be recorded as it is: {problem}")


def answer_approval(
    store: RunStore,
    run_id: str,
    job: str,
    *,
    approve: bool,
    output: Any = None,
    reason: str | None = None,
    workflow: str | None = None,
) -> OperationReceipt:
    """Record the answer to the approval ``job`` waits for in run ``run_id``: approved (the job
    succeeds with ``output``) or rejected (it fails with ``reason``). Refused unless the job is
    an approval job that is waiting now; ``workflow`` refuses a run of another workflow."""
    run = store.read_run(run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id!r} in this database (check the run id and the MongoDB URI)")
    if workflow is not None and run.workflow != workflow:
        raise RunNotFound(f"run {run_id} is a run of workflow {run.workflow!r}, not {workflow!r}")
    if job not in run.jobs:
        raise OperationRefused(f"run {run_id} has no job {job!r} (its jobs: {', '.join(run.jobs)})")
    definition = run.definition.job(job)
    if definition.approval is None:
        raise OperationRefused(
            f"job {job!r} of run {run_id} is not an approval job: there is nothing to answer"
        )
    if run.state != RunState.RUNNING:
        raise OperationRefused(
            f"run {run_id} has ended ({run.state}): job {job!r} no longer waits for an answer"
        )
    record = run.jobs[job]
    if record.state != JobState.WAITING:
        if record.state == JobState.PENDING:
            what = "has not started yet"
        elif record.state == JobState.SUCCEEDED:
            what = "was approved already"
        else:
            what = f"is {record.state} (answered, or timed out)"
        raise OperationRefused(f"job {job!r} of run {run_id} is not waiting for an answer: it {what}")
    if approve:
        _check_answer_output(run_id, job, output)
    answer = StatusEvent(
        run_id=run_id,
        workflow=run.workflow,
        status=StatusName.APPROVED if approve else StatusName.REJECTED,
        phase=definition.phase,
        job=job,
        attempt=record.attempt,
        output=output if approve else None,
        reason=None if reason is None else limits.bounded(reason),
    )
    created = store.record_status(answer)
    return OperationReceipt(run_id=run_id, operation=answer.status, sequence=answer.attempt, created=created)
