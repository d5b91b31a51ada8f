"""Completing a callback job from outside: ``complete`` (an output or an error) and ``heartbeat``
with the token of the attempt that waits (``runtime.documents.callbacks``). Each is a status of
that attempt recorded as an operator (``callback_completed``, ``callback_heartbeat``), which the
orchestrator applies like any other event (``runtime.engine.callbacks``). A token that is no
token, not made with this control plane's key, or whose attempt has ended is refused here,
clearly, before anything is recorded; the engine checks the attempt again when it applies it.

Standard library and the store port only: the starter function imports this inside Lambda.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from runtime import limits
from runtime.definition.model import Job
from runtime.documents.callbacks import CallbackAttempt, callback_token, is_authentic, token_attempt
from runtime.documents.run import Run, StatusEvent
from runtime.engine.callbacks import accepts_completion, awaits_callback
from runtime.errors import OperationRefused, RunNotFound
from runtime.ports import RunStore
from runtime.service.approvals import check_output
from runtime.statuses import JobState, RunState, StatusName

ID_MAX_CHARS = 128
"""The longest id a sender may give a completion or a heartbeat."""


@dataclass(frozen=True, kw_only=True)
class CallbackReceipt:
    """What a completion or a heartbeat recorded."""

    run_id: str
    job: str
    attempt: int
    id: str
    """The completion's (or heartbeat's) id: given by the sender, or made here."""
    created: bool
    """False: recorded before with this id (and applied once)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "job": self.job,
            "attempt": self.attempt,
            "id": self.id,
            "created": self.created,
        }

    @classmethod
    def from_json(cls, answer: dict[str, Any]) -> CallbackReceipt:
        """The starter's answer to a ``complete`` or ``heartbeat`` action."""
        return cls(
            run_id=answer["run_id"],
            job=answer["job"],
            attempt=int(answer["attempt"]),
            id=answer["id"],
            created=bool(answer["created"]),
        )


def complete_callback(
    store: RunStore,
    token: str,
    *,
    output: Any = None,
    error: str | None = None,
    completion_id: str | None = None,
    workflow: str | None = None,
) -> CallbackReceipt:
    """Complete the attempt ``token`` names: it succeeds with ``output``, or fails with ``error``
    when one is given. Once per attempt: the same ``completion_id`` again is the same completion;
    another completion of an attempt completed before is refused."""
    try:
        run, job, named = _waiting_attempt(store, token, workflow)
    except OperationRefused:
        again = _recorded_before(store, token, completion_id)
        if again is None:
            raise
        return again
    completion_id = _given_id(completion_id)
    if error is None:
        check_output(
            output, f"the output of the callback of job {job.name!r} of run {run.run_id}", "a completion"
        )
    completion = StatusEvent(
        run_id=run.run_id,
        workflow=run.workflow,
        status=StatusName.CALLBACK_COMPLETED,
        phase=job.phase,
        job=job.name,
        attempt=named.attempt,
        output=output if error is None else None,
        error=None if error is None else limits.bounded(error or "failed"),
        request_id=completion_id,
    )
    created = store.record_status(completion)
    if not created:
        recorded = store.read_status(
            run.run_id, job.phase, job.name, StatusName.CALLBACK_COMPLETED, named.attempt
        )
        if recorded is not None and recorded.request_id != completion_id:
            raise OperationRefused(
                f"the callback of job {job.name!r} of run {run.run_id} (attempt {named.attempt}) was "
                f"completed already, by completion {recorded.request_id}: a token completes once"
            )
    return CallbackReceipt(
        run_id=run.run_id, job=job.name, attempt=named.attempt, id=completion_id, created=created
    )


def heartbeat_callback(
    store: RunStore, token: str, *, heartbeat_id: str | None = None, workflow: str | None = None
) -> CallbackReceipt:
    """Keep the attempt ``token`` names waiting ``timeout`` more seconds from now. Its code must
    have returned: until then the wait has not begun."""
    run, job, named = _waiting_attempt(store, token, workflow)
    if not awaits_callback(job, run.jobs[job.name]):
        raise OperationRefused(
            f"job {job.name!r} of run {run.run_id} still runs its code: its callback's timeout "
            "starts when the code returns, so there is nothing to extend yet"
        )
    heartbeat_id = _given_id(heartbeat_id)
    heartbeat = StatusEvent(
        run_id=run.run_id,
        workflow=run.workflow,
        status=StatusName.CALLBACK_HEARTBEAT,
        phase=job.phase,
        job=job.name,
        attempt=named.attempt,
        request_id=heartbeat_id,
        slot=heartbeat_id,
    )
    created = store.record_status(heartbeat)
    return CallbackReceipt(
        run_id=run.run_id, job=job.name, attempt=named.attempt, id=heartbeat_id, created=created
    )


def token_of(store: RunStore, run: Run, job: Job) -> str | None:
    """The token of the job's attempt that waits for its callback without code (what operators
    are shown, to hand out); None when none waits, or the store has no key to make it with."""
    keys = store.keys
    record = run.jobs.get(job.name)
    if keys is None or record is None or job.callback is None or job.callback.runs_code:
        return None
    if run.state != RunState.RUNNING or record.state != JobState.WAITING:
        return None
    return callback_token(keys, run.workflow, run.run_id, job.name, record.attempt)


def awaited_token(store: RunStore, awaited: StatusEvent) -> str | None:
    """The token of the attempt a ``callback_awaited`` status records, while it still waits (what
    the progress output shows)."""
    run = store.read_run(awaited.run_id)
    if run is None or awaited.job is None or awaited.job not in run.jobs:
        return None
    if run.jobs[awaited.job].attempt != awaited.attempt:
        return None
    return token_of(store, run, run.definition.job(awaited.job))


def complete_command(token: str) -> str:
    """The command that completes a callback (what progress tells people)."""
    return f"python -m cdk_app complete {token} --output '{{...}}'"


def _waiting_attempt(store: RunStore, token: str, workflow: str | None) -> tuple[Run, Job, CallbackAttempt]:
    try:
        named = token_attempt(token)
    except ValueError as exc:
        raise OperationRefused(str(exc)) from None
    keys = store.keys
    if keys is None:
        raise OperationRefused(
            "callback tokens are checked with the control plane's status key, and none is set"
        )
    if not is_authentic(keys, token):
        raise OperationRefused(
            f"the callback token for job {named.job!r} of run {named.run_id} is not authentic: its "
            "signature does not match (a token is used as it was handed out, whole)"
        )
    run = store.read_run(named.run_id)
    if run is None:
        raise RunNotFound(f"no run {named.run_id!r} in this database (check the MongoDB URI)")
    for expected in (workflow, named.workflow):
        if expected is not None and run.workflow != expected:
            raise RunNotFound(f"run {run.run_id} is a run of workflow {run.workflow!r}, not {expected!r}")
    if named.job not in run.jobs or run.definition.job(named.job).callback is None:
        raise OperationRefused(f"run {run.run_id} has no callback job {named.job!r}")
    job, record = run.definition.job(named.job), run.jobs[named.job]
    if run.state != RunState.RUNNING:
        raise OperationRefused(f"run {run.run_id} has ended ({run.state}): its callback tokens are refused")
    if not accepts_completion(job, record, named.attempt):
        raise OperationRefused(
            f"the callback token is for attempt {named.attempt} of job {job.name!r} of run {run.run_id}, "
            f"which has ended: the job is {record.state} at attempt {record.attempt}"
        )
    return run, job, named


def _recorded_before(store: RunStore, token: str, completion_id: str | None) -> CallbackReceipt | None:
    """The receipt of the completion ``completion_id`` of the token's attempt when it was recorded
    before (a send repeated after it was applied); None otherwise."""
    if completion_id is None:
        return None
    named = token_attempt(token)
    run = store.read_run(named.run_id)
    if run is None or named.job not in run.jobs:
        return None
    phase = run.definition.job(named.job).phase
    recorded = store.read_status(run.run_id, phase, named.job, StatusName.CALLBACK_COMPLETED, named.attempt)
    if recorded is None or recorded.request_id != completion_id:
        return None
    return CallbackReceipt(
        run_id=run.run_id, job=named.job, attempt=named.attempt, id=completion_id, created=False
    )


def _given_id(given: str | None) -> str:
    if given is None:
        return uuid.uuid4().hex
    if not isinstance(given, str) or not given or len(given) > ID_MAX_CHARS:
        raise OperationRefused(f"an id is 1 to {ID_MAX_CHARS} characters, got {given!r}")
    return given
