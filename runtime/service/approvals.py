"""Answering an approval job: ``approve`` and ``reject`` record the answer as a status of the
waiting attempt (``approved`` / ``rejected``), which the orchestrator applies like any other
event; the engine decides (``runtime.engine.timers.plan_answer``) and the answer or the timeout applied
first wins. An answer the run cannot take now is refused here, clearly, before anything is
recorded. The CLI and the starter function call these.

Standard library and the store port only: the starter function imports this inside Lambda.
"""

from __future__ import annotations

from typing import Any

from runtime import limits
from runtime.documents.run import StatusEvent
from runtime.errors import RunError
from runtime.ports import RunStore
from runtime.service.operations import OperationReceipt
from runtime.statuses import JobState, RunState, StatusName


def approval_commands(run_id: str, job: str) -> tuple[str, str]:
    """The two commands that answer an approval (what the notifier tells people)."""
    return (
        f"python -m cdk_app approve {run_id} {job} --output '{{}}'",
        f"python -m cdk_app reject {run_id} {job} --reason '...'",
    )


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
        raise RunError(f"no run {run_id!r} in this database (check the run id and the MongoDB URI)")
    if workflow is not None and run.workflow != workflow:
        raise RunError(f"run {run_id} is a run of workflow {run.workflow!r}, not {workflow!r}")
    if job not in run.jobs:
        raise RunError(f"run {run_id} has no job {job!r} (its jobs: {', '.join(run.jobs)})")
    definition = run.definition.job(job)
    if definition.approval is None:
        raise RunError(f"job {job!r} of run {run_id} is not an approval job: there is nothing to answer")
    if run.state != RunState.RUNNING:
        raise RunError(f"run {run_id} has ended ({run.state}): job {job!r} no longer waits for an answer")
    record = run.jobs[job]
    if record.state != JobState.WAITING:
        if record.state == JobState.PENDING:
            what = "has not started yet"
        elif record.state == JobState.SUCCEEDED:
            what = "was approved already"
        else:
            what = f"is {record.state} (answered, or timed out)"
        raise RunError(f"job {job!r} of run {run_id} is not waiting for an answer: it {what}")
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
