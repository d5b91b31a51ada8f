"""The starter: start a run with a caller-chosen id (idempotent), from the bundled definition;
operate one of the workflow's runs (cancel, redrive, approve, reject, an event, a callback's
completion or heartbeat); or read them (get, history,
list): for systems without database access, and ``runtime.client.Client.aws``."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from runtime import contracts
from runtime.aws.telemetry import setup_function
from runtime.aws.versions import cloud_deployment
from runtime.definition.input_check import InputRefused
from runtime.definition.model import Workflow
from runtime.documents.children import START_CHILD, child_start_from_payload
from runtime.documents.envelopes import as_mapping
from runtime.documents.listing import PagePosition
from runtime.errors import EventError, RunError, RunNotFound
from runtime.service.approvals import answer_approval
from runtime.service.callbacks import complete_callback, heartbeat_callback
from runtime.service.children import start_child
from runtime.service.events import send_event
from runtime.service.operations import (
    list_runs,
    request_cancel,
    request_redrive,
    request_upgrade,
    run_history,
)
from runtime.service.run_view import summarize
from runtime.service.runs import start_run
from runtime.store.connection import store_from_env

log = logging.getLogger(__name__)

STORE_CONNECTIONS = 1
"""One request at a time, on one thread."""

_state: dict[str, Any] = {}

ACTIONS = ("cancel", "redrive", "approve", "reject", "event")
"""Operations on a run; ``start_child`` (``runtime.documents.children``) is the parent
orchestrator's, with the parent attempt's key."""
CALLBACK_ACTIONS = ("complete", "heartbeat")
"""A callback token's completion and heartbeat (``runtime.service.callbacks``)."""
READS = ("get", "history", "list")


def load_definition(path: str) -> Workflow:
    base = Path(os.environ.get("LAMBDA_TASK_ROOT", "."))
    return Workflow.from_document(json.loads((base / path).read_text(encoding="utf-8")))


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """``{"run_id"?, "input"?, "scheduled"?}`` -> ``{"run_id", "created"}`` (``scheduled``: true
    from the workflow's schedule and a backfill, whose runs its ``schedule_overlap`` applies to);
    ``{"action": "cancel" | "redrive", "run_id", "reason"?, "upgrade"?}`` and ``{"action": "approve" |
    "reject", "run_id", "job", "output"? | "reason"?}`` -> ``{"run_id", "action", "created"}``;
    ``{"action": "event", "name", "payload"?, "run_id"?, "id"?}`` -> ``{"event_id", "created",
    "delivered": [{"run_id", "job", "attempt"}]}``; ``{"action": "complete", "token", "output"? |
    "error"?, "id"?}`` and ``{"action": "heartbeat", "token", "id"?}`` -> ``{"run_id", "job",
    "attempt", "id", "created"}``;
    ``{"action": "get", "run_id"}`` -> ``{"run": <status --json's object>}``, ``{"action":
    "history", "run_id"}`` -> ``{"history": [...]}``, ``{"action": "list", "status"?, "since"?,
    "limit"?}`` -> ``{"runs": [...]}`` (this workflow's, newest first); ``{"action":
    "start_child", ...}`` (a parent's orchestrator: ``runtime.documents.children.ChildStart``) ->
    ``{"run_id", "created"}``. A bad request answers with
    an ``error`` and its ``error_type`` instead of raising, so an EventBridge schedule never
    retries it forever."""
    if "store" not in _state:
        setup_function(os.environ)
        definition = load_definition(os.environ[contracts.WORKFLOW_DEFINITION_FILE])
        versions = os.environ.get(contracts.JOB_VERSIONS)
        # The versions this deploy published: a stack from before versions has none, and its
        # runs invoke the functions by name.
        deployment = (
            None
            if versions is None
            else cloud_deployment(definition, versions, str(getattr(context, "invoked_function_arn", "")))
        )
        _state.update(
            store=store_from_env(
                os.environ, max_pool_size=STORE_CONNECTIONS, create_indexes=True, workflow=definition.name
            ),
            definition=definition,
            deployment=deployment,
        )
    try:
        request = as_mapping(event or {})
        run_id = request.get("run_id")
        if run_id is not None and (not isinstance(run_id, str) or not run_id.strip()):
            raise EventError(f"run_id must be a non-empty string, got {run_id!r}")
        if request.get("action") in READS:
            return _read(request, run_id)
        if request.get("action") == "event":
            return _send_event(request, run_id)
        if request.get("action") in CALLBACK_ACTIONS:
            return _callback(request)
        if request.get("action") == START_CHILD:
            started = start_child(
                _state["store"], _state["definition"], child_start_from_payload(request), _state["deployment"]
            )
            return {"run_id": started.run_id, "created": started.created}
        if "action" in request:
            return _operate(request, run_id)
        scheduled = request.get("scheduled", False)
        if not isinstance(scheduled, bool):
            raise EventError(f"scheduled is true or false, got {scheduled!r}")
        started = start_run(
            _state["store"],
            _state["definition"],
            run_id=run_id,
            input=request.get("input"),
            deployment=_state["deployment"],
            scheduled=scheduled,
        )
    except (EventError, RunError) as exc:
        log.warning("request refused: %s", exc)
        problems = {"problems": exc.problems} if isinstance(exc, InputRefused) else {}
        return {"error": str(exc), "error_type": type(exc).__name__, **problems}
    return {"run_id": started.run_id, "created": started.created}


def _read(request: Mapping[str, Any], run_id: str | None) -> dict[str, Any]:
    action, workflow, store = request["action"], _state["definition"].name, _state["store"]
    if action == "list":
        since = request.get("since")
        limit = request.get("limit", 50)
        if since is not None and not isinstance(since, str):
            raise EventError(f"since is an ISO 8601 time, got {since!r}")
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise EventError(f"limit is a whole number of runs, got {limit!r}")
        try:
            after = None if since is None else datetime.fromisoformat(since)
        except ValueError:
            raise EventError(f"since is an ISO 8601 time, got {since!r}") from None
        position = request.get("after")
        try:
            page = None if position is None else PagePosition.from_json(as_mapping(position))
        except (TypeError, ValueError, EventError) as exc:
            raise EventError(
                f"after is a page position ({{created_at, run_ids}}), got {position!r}: {exc}"
            ) from None
        runs = list_runs(
            store,
            workflow=workflow,
            status=request.get("status"),
            since=after,
            limit=limit,
            deploy_id=request.get("deploy_id"),
            position=page,
        )
        return {"runs": [run.to_json() for run in runs]}
    if run_id is None:
        raise EventError(f"{action} needs the run_id of the run to read")
    if action == "history":
        return {
            "run_id": run_id,
            "history": [entry.to_json() for entry in run_history(store, run_id, workflow)],
        }
    report = summarize(store, run_id)
    if report is None or report.workflow != workflow:
        raise RunNotFound(f"no run {run_id!r} of workflow {workflow!r}")
    return {"run": report.to_json()}


def _send_event(request: Mapping[str, Any], run_id: str | None) -> dict[str, Any]:
    """An event for this workflow's event jobs (``runtime.service.events``)."""
    name, event_id = request.get("name"), request.get("id")
    if not isinstance(name, str) or not name:
        raise EventError(f"event needs the name of the event, got {name!r}")
    if event_id is not None and not isinstance(event_id, str):
        raise EventError(f"id is the event's id as a string, got {event_id!r}")
    receipt = send_event(
        _state["store"],
        _state["definition"].name,
        name,
        request.get("payload"),
        run_id=run_id,
        event_id=event_id,
    )
    log.info("event %r sent (id %s, delivered to %d)", name, receipt.event_id, len(receipt.delivered))
    return receipt.to_json()


def _callback(request: Mapping[str, Any]) -> dict[str, Any]:
    """A callback token of this workflow's runs completed, or its wait extended
    (``runtime.service.callbacks``)."""
    token, given_id, error = request.get("token"), request.get("id"), request.get("error")
    if not isinstance(token, str) or not token:
        raise EventError(f"{request['action']} needs the callback token, got {token!r}")
    if given_id is not None and not isinstance(given_id, str):
        raise EventError(f"id is the {request['action']}'s id as a string, got {given_id!r}")
    workflow = _state["definition"].name
    if request["action"] == "heartbeat":
        receipt = heartbeat_callback(_state["store"], token, heartbeat_id=given_id, workflow=workflow)
    else:
        if error is not None and (not isinstance(error, str) or "output" in request):
            raise EventError("complete takes an output or an error (a string), not both")
        receipt = complete_callback(
            _state["store"],
            token,
            output=request.get("output"),
            error=error,
            completion_id=given_id,
            workflow=workflow,
        )
    log.info(
        "callback %s of job %r of run %r (attempt %d)",
        request["action"],
        receipt.job,
        receipt.run_id,
        receipt.attempt,
    )
    return receipt.to_json()


def _operate(request: Mapping[str, Any], run_id: str | None) -> dict[str, Any]:
    action, reason = request.get("action"), request.get("reason")
    if action not in ACTIONS:
        raise EventError(f"action must be one of {', '.join(ACTIONS + READS)}, got {action!r}")
    if run_id is None:
        raise EventError(f"{action} needs the run_id of the run to {action}")
    if reason is not None and not isinstance(reason, str):
        raise EventError(f"reason must be a string, got {reason!r}")
    if reason is not None and action not in ("cancel", "reject"):
        raise EventError("only a cancel or a reject takes a reason")
    if "output" in request and action != "approve":
        raise EventError("only an approve takes an output")
    upgrade = request.get("upgrade", False)
    if not isinstance(upgrade, bool) or (upgrade and action != "redrive"):
        raise EventError(f"upgrade is true or false, on a redrive only; got {upgrade!r} on a {action}")
    workflow = _state["definition"].name
    if action in ("approve", "reject"):
        job = request.get("job")
        if not isinstance(job, str) or not job:
            raise EventError(f"{action} needs the job that waits for the answer, got {job!r}")
        receipt = answer_approval(
            _state["store"],
            run_id,
            job,
            approve=action == "approve",
            output=request.get("output"),
            reason=reason,
            workflow=workflow,
        )
    elif action == "cancel":
        receipt = request_cancel(_state["store"], run_id, reason, workflow=workflow)
    elif upgrade:
        # This deploy's definition and versions: what a run started now would run.
        receipt = request_upgrade(
            _state["store"], run_id, _state["definition"], _state["deployment"], workflow=workflow
        )
    else:
        receipt = request_redrive(_state["store"], run_id, workflow=workflow)
    log.info("%s of run %r requested (created: %s)", action, run_id, receipt.created)
    return {"run_id": run_id, "action": action, "created": receipt.created}
