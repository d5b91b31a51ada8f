"""The job wrapper: the real Lambda entry point of every job function.

It reports ``started``, calls the user's handler, reports ``success`` with the returned dict or
``failed`` with the exception, and runs each attempt's user code at most once when nothing
crashes: the ``started`` report is the claim (unique per attempt), and an invocation that finds
the attempt claimed by another request leaves it to that one. Lambda retries an invocation with
the same request id, so a retry after a crash takes its own claim over and the attempt is never
lost; if every retry dies, the on-failure destination tells the orchestrator.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.errors import EventError
from runtime.events import JobEvent, parse_job_event
from runtime.store import Store, utcnow

log = logging.getLogger(__name__)

UserHandler = Callable[[dict[str, Any], Any], Any]
ERROR_TRACE_LINES = 8


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


def _status(event: JobEvent, status: str, **fields: Any) -> dict[str, Any]:
    return {
        "runId": event.run_id,
        "workflow": event.workflow,
        "phase": event.phase,
        "job": event.job,
        "status": status,
        "attempt": event.attempt,
        "date": utcnow(),
        **fields,
    }


def _describe(exc: BaseException) -> str:
    trace = traceback.format_exception(exc)
    tail = "".join(trace[-ERROR_TRACE_LINES:]).strip()
    return f"{type(exc).__name__}: {exc}\n{tail}"


def run_attempt(
    store: Store, user_handler: UserHandler, raw_event: object, context: Any, request_id: str
) -> AttemptResult:
    try:
        event = parse_job_event(raw_event)
    except EventError as exc:
        log.warning("dropped a malformed job event: %s", exc)
        return AttemptResult(outcome="dropped", error=str(exc))
    if store.terminal_status(event.run_id, event.phase, event.job, event.attempt) is not None:
        return AttemptResult(outcome="already-finished")
    if not store.insert_status(_status(event, "started", requestId=request_id)):
        claim = store.find_status(event.run_id, event.phase, event.job, "started", event.attempt)
        if claim is not None and claim.get("requestId") != request_id:
            return AttemptResult(outcome="owned-elsewhere")
    try:
        output = user_handler(event.to_payload(), context)
        if output is not None and not isinstance(output, dict):
            raise TypeError(f"a job handler returns a dict or None, not {type(output).__name__}")
        json.dumps(output)
    except Exception as exc:  # the user's code may raise anything: that is the job failing
        error = _describe(exc)
        log.error("job %s attempt %s of run %s failed: %s", event.job, event.attempt, event.run_id, error)
        store.insert_status(_status(event, "failed", error=error))
        return AttemptResult(outcome="failed", error=error)
    store.insert_status(_status(event, "success", output=output))
    return AttemptResult(outcome="success", output=output)


_state: dict[str, Any] = {}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point of every job function."""
    if "store" not in _state:
        from runtime.store import store_from_env

        _state["store"] = store_from_env(os.environ)
        _state["user"] = load_user_handler(os.environ.get("JOB_HANDLER"))
    request_id = getattr(context, "aws_request_id", None) or uuid.uuid4().hex
    result = run_attempt(_state["store"], _state["user"], event, context, request_id)
    return {"outcome": result.outcome, "error": result.error}
