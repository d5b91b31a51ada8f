"""The starter: start a run with a caller-chosen id (idempotent), from the bundled definition."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from runtime import contracts
from runtime.definition.model import Workflow
from runtime.errors import EventError, RunError
from runtime.events import as_mapping
from runtime.runs import start_run

log = logging.getLogger(__name__)

_state: dict[str, Any] = {}


def load_definition(path: str) -> Workflow:
    base = Path(os.environ.get("LAMBDA_TASK_ROOT", "."))
    return Workflow.from_document(json.loads((base / path).read_text(encoding="utf-8")))


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    """``{"run_id"?, "input"?}`` -> ``{"run_id", "created"}``; a bad request answers with an
    ``error`` instead of raising, so an EventBridge schedule never retries it forever."""
    if "store" not in _state:
        from runtime.connection import store_from_env

        definition = load_definition(os.environ[contracts.WORKFLOW_DEFINITION_FILE])
        _state.update(store=store_from_env(os.environ), definition=definition)
    try:
        request = as_mapping(event or {})
        run_id = request.get("run_id")
        if run_id is not None and (not isinstance(run_id, str) or not run_id.strip()):
            raise EventError(f"run_id must be a non-empty string, got {run_id!r}")
        started = start_run(_state["store"], _state["definition"], run_id=run_id, input=request.get("input"))
    except (EventError, RunError) as exc:
        log.warning("start refused: %s", exc)
        return {"error": str(exc)}
    return {"run_id": started.run_id, "created": started.created}
