"""The job wrapper: the real Lambda entry point of every job function.

It reports ``started``, calls the user's handler, reports ``success`` with the returned dict or
``failed`` with the exception, and runs each attempt's user code at most once when nothing
crashes: the ``started`` report is the claim (unique per attempt), and an invocation that finds
the attempt claimed leaves it to the claimant. The one exception is Lambda's own retry of the
claimant after it crashed: it carries the same request id and comes at least a minute after the
failure, so a claim of the same request id at least ``LAMBDA_RETRY_DELAY`` old is taken over and
the attempt is never lost (a same-id duplicate arriving sooner is the queue delivering twice, and
is left alone). If every retry dies, the on-failure destination tells the orchestrator.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import bson
import bson.errors

from runtime import contracts
from runtime.documents import StatusEvent, StatusName
from runtime.engine import LAMBDA_RETRY_DELAY, age, utcnow
from runtime.errors import EventError
from runtime.events import JobEvent, parse_job_event
from runtime.ports import RunStore

log = logging.getLogger(__name__)

UserHandler = Callable[[dict[str, Any], Any], Any]
ERROR_TRACE_LINES = 8

OUTPUT_MAX_BYTES = 128 * 1024
"""Half of EventBridge's 256 KB event limit: the status event carries the output in an envelope."""


def stub_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """What a job without ``code`` runs: log the event and succeed, so a new spec runs end to end
    before any code is written."""
    log.info("stub job %s (attempt %s) of run %s: %s", event["job"], event["attempt"], event["run_id"], event)
    return {"stub": True, "job": event["job"]}


def load_user_handler(spec: str | None) -> UserHandler:
    """``module.function`` from ``JOB_HANDLER``; the stub when unset."""
    if not spec:
        return stub_handler
    module_name, _, function_name = spec.rpartition(".")
    if not module_name:
        raise EventError(f"JOB_HANDLER must be 'module.function', got {spec!r}")
    function = getattr(importlib.import_module(module_name), function_name, None)
    if not callable(function):
        raise EventError(f"JOB_HANDLER {spec!r}: module {module_name!r} has no function {function_name!r}")
    return function


@dataclass(frozen=True, kw_only=True)
class AttemptResult:
    outcome: str
    """``success``, ``failed``, ``already-finished``, ``owned-elsewhere`` or ``dropped``."""
    output: Any = None
    error: str | None = None


def _status(event: JobEvent, status: StatusName, **fields: Any) -> StatusEvent:
    return StatusEvent(
        run_id=event.run_id,
        workflow=event.workflow,
        status=status,
        phase=event.phase,
        job=event.job,
        attempt=event.attempt,
        **fields,
    )


def _check_output(output: Any) -> None:
    """The output is stored in the run document, travels in the status event (EventBridge takes
    256 KB) and in the payload of the jobs after this one: strict JSON, BSON, field names MongoDB
    takes as they are, and well under the event limit."""
    if output is None:
        return
    if not isinstance(output, dict):
        raise TypeError(f"a job handler returns a dict or None, not {type(output).__name__}")
    try:
        size = len(json.dumps(output, allow_nan=False).encode())
        bson.encode({"output": output})
    except (TypeError, ValueError, OverflowError, bson.errors.InvalidDocument) as exc:
        raise TypeError(
            f"the job's output cannot be stored (it must be JSON with string keys): {exc}"
        ) from exc
    if size > OUTPUT_MAX_BYTES:
        raise ValueError(
            f"the job's output is {size} bytes of JSON; at most {OUTPUT_MAX_BYTES} fit an event "
            "(store large results elsewhere, e.g. S3 or a collection, and return a reference)"
        )
    bad = next(_unsafe_keys(output), None)
    if bad is not None:
        raise ValueError(f"the job's output has a key {bad!r}: keys must not start with '$' or contain '.'")


def _unsafe_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key.startswith("$") or "." in key:
                yield key
            yield from _unsafe_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _unsafe_keys(item)


def _describe(exc: BaseException) -> str:
    trace = traceback.format_exception(exc)
    tail = "".join(trace[-ERROR_TRACE_LINES:]).strip()
    return f"{type(exc).__name__}: {exc}\n{tail}"


def run_attempt(
    store: RunStore,
    user_handler: UserHandler,
    raw_event: object,
    context: Any,
    request_id: str,
    takeover_after: timedelta = LAMBDA_RETRY_DELAY,
) -> AttemptResult:
    try:
        event = parse_job_event(raw_event)
    except EventError as exc:
        log.warning("dropped a malformed job event: %s", exc)
        return AttemptResult(outcome="dropped", error=str(exc))
    if store.read_terminal_status(event.run_id, event.phase, event.job, event.attempt) is not None:
        return AttemptResult(outcome="already-finished")
    if not store.record_status(_status(event, StatusName.STARTED, request_id=request_id)):
        claim = store.read_status(event.run_id, event.phase, event.job, StatusName.STARTED, event.attempt)
        if claim is not None and not _is_own_retry(claim, request_id, takeover_after):
            return AttemptResult(outcome="owned-elsewhere")
    try:
        output = user_handler(event.to_payload(), context)
        _check_output(output)
    except Exception as exc:  # the user's code may raise anything: that is the job failing
        error = _describe(exc)
        log.error("job %s attempt %s of run %s failed: %s", event.job, event.attempt, event.run_id, error)
        store.record_status(_status(event, StatusName.FAILED, error=error))
        return AttemptResult(outcome=StatusName.FAILED, error=error)
    store.record_status(_status(event, StatusName.SUCCESS, output=output))
    return AttemptResult(outcome=StatusName.SUCCESS, output=output)


def _is_own_retry(claim: StatusEvent, request_id: str, takeover_after: timedelta) -> bool:
    return (
        claim.request_id == request_id
        and claim.date is not None
        and age(claim.date, utcnow()) >= takeover_after
    )


def _import_failure(spec: str, exc: BaseException) -> UserHandler:
    """Stands in for user code that cannot be imported, so each attempt reports the reason as
    its failure instead of Lambda retrying an import error it can never get past."""
    error = _describe(exc)

    def cannot_import(event: dict[str, Any], context: Any) -> None:
        raise ImportError(f"could not load the job handler {spec!r}: {error}")

    return cannot_import


_state: dict[str, Any] = {}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point of every job function."""
    if "store" not in _state:
        from runtime.connection import store_from_env

        spec = os.environ.get(contracts.JOB_HANDLER)
        try:
            user = load_user_handler(spec)
        except Exception as exc:  # any error of the user's module: reported as the attempt's failure
            user = _import_failure(spec or "", exc)
        _state.update(store=store_from_env(os.environ), user=user)
    request_id = getattr(context, "aws_request_id", None) or uuid.uuid4().hex
    result = run_attempt(_state["store"], _state["user"], event, context, request_id)
    return {"outcome": result.outcome, "error": result.error}
