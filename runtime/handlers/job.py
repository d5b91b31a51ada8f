"""The entry point of every job function (the job wrapper): the user's handler named by
``JOB_HANDLER`` (or the stub), the store, then ``runtime.service.job_attempt.run_attempt``."""

from __future__ import annotations

import importlib
import logging
import os
import uuid
from typing import Any

from runtime import contracts
from runtime.aws import tracing
from runtime.aws.handoff import LambdaHandoff, handoff_client
from runtime.aws.logs import event_fields, log_context
from runtime.aws.telemetry import setup_function
from runtime.errors import EventError
from runtime.service.job_attempt import UserHandler, describe, run_attempt
from runtime.store.connection import store_from_env

log = logging.getLogger(__name__)


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


def _import_failure(spec: str, exc: BaseException) -> UserHandler:
    """Stands in for user code that cannot be imported, so each attempt reports the reason as
    its failure instead of Lambda retrying an import error it can never get past."""
    error = describe(exc)

    def cannot_import(event: dict[str, Any], context: Any) -> None:
        raise ImportError(f"could not load the job handler {spec!r}: {error}")

    return cannot_import


def _handoff(orchestrator: str | None) -> LambdaHandoff | None:
    """With ``delivery: fast`` the constructs name the orchestrator: each recorded report is
    handed to it; without, the Atlas trigger alone delivers."""
    return LambdaHandoff(handoff_client(), orchestrator) if orchestrator else None


STORE_CONNECTIONS = 2
"""The attempt and its lease's heartbeat thread use the store at the same time."""

_state: dict[str, Any] = {}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point of every job function."""
    if "user" not in _state:
        setup_function(os.environ)
        spec = os.environ.get(contracts.JOB_HANDLER)
        try:
            user = load_user_handler(spec)
        except Exception as exc:  # any error of the user's module: reported as the attempt's failure
            user = _import_failure(spec or "", exc)
        _state.update(user=user, handoff=_handoff(os.environ.get(contracts.ORCHESTRATOR_FUNCTION)))
    # Once per process, as the secret is read once; with a database role to assume, per
    # invocation, so its credentials are renewed as they near expiry (cheap otherwise: the client
    # is cached). A job creates no index nor view (its database role may not); the starter and
    # the reconciler do. It reads through its workflow's views alone.
    if "store" not in _state or os.environ.get(contracts.MONGODB_ROLE_ARN):
        _state["store"] = store_from_env(os.environ, max_pool_size=STORE_CONNECTIONS, job=True)
    request_id = getattr(context, "aws_request_id", None) or uuid.uuid4().hex
    try:
        with log_context(**event_fields(event)):
            result = run_attempt(
                _state["store"], _state["user"], event, context, request_id, handoff=_state["handoff"]
            )
    finally:
        tracing.flush()
    return {"outcome": result.outcome, "error": result.error}
