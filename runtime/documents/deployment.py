"""What a run invokes: the deploy it started under and the function version of each of its jobs.

The starter records a ``Deployment`` in the run document when the run starts; every job attempt
of the run is then invoked on the function its map names (a qualified Lambda ARN in the cloud,
``<function>:<code hash>`` locally), so a deploy never changes the code or the settings of a run
in flight. A run without one (started before versions, or by ``start`` against a stack) invokes
the unqualified function name, as before. Standard library only: the starter imports it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import EventError

DEPLOY_ID, FUNCTIONS = "deployId", "functions"
DEPLOY_ID_CHARS = 12
"""Hex digits of a deploy id: enough to tell a workflow's deploys apart, short enough to type."""


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """A run's version map."""

    deploy_id: str
    """Names what the run runs: the definition and the function of every job (``deploy_id_of``)."""
    functions: Mapping[str, str] = field(default_factory=dict)
    """Job -> the qualified function its attempts invoke. Wait and approval jobs run no
    function, so they have none."""

    def function_of(self, job: str) -> str | None:
        return self.functions.get(job)

    def to_document(self) -> dict[str, Any]:
        return {DEPLOY_ID: self.deploy_id, FUNCTIONS: dict(self.functions)}


def deployment_from_document(document: object) -> Deployment | None:
    """The run document's version map; None for a run recorded without one."""
    if document is None:
        return None
    if not isinstance(document, Mapping) or not isinstance(document.get(DEPLOY_ID), str):
        raise EventError(f"a run's deployment must hold a deploy id and its functions, got {document!r}")
    functions = document.get(FUNCTIONS) or {}
    return Deployment(deploy_id=document[DEPLOY_ID], functions={str(k): str(v) for k, v in functions.items()})


def deploy_id_of(definition: Mapping[str, Any], functions: Mapping[str, str]) -> str:
    """The id of a deploy: a hash of the compiled definition and of the function version of each
    job. A version changes whenever its function's code or configuration does, so two deploys
    get the same id exactly when a run would run the same thing under both."""
    text = json.dumps({"definition": definition, FUNCTIONS: dict(functions)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:DEPLOY_ID_CHARS]


def deployment_of(definition: Mapping[str, Any], functions: Mapping[str, str]) -> Deployment:
    return Deployment(deploy_id=deploy_id_of(definition, functions), functions=dict(functions))
