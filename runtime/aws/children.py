"""The ``ChildStarter`` port's AWS adapter: a child run is started by an asynchronous invocation
of the child workflow's starter function (``{"action": "start_child", ...}``), which checks the
parent attempt's key, pins the run to its own deploy and records the parent attempt's
``started``. The orchestrator holds no right to write another workflow's runs; it may invoke the
starters of the workflows its spec calls, and nothing else."""

from __future__ import annotations

import json
from typing import Any

from runtime.documents.children import ChildStart
from runtime.ports import DispatchError, InvocationRefused

STARTER_ROLE = "starter"


def starter_function_name(workflow: str) -> str:
    """The physical name of ``workflow``'s starter function (as ``constructs.workflow`` names it)."""
    return f"{workflow}-{STARTER_ROLE}"


class LambdaChildStarter:
    def __init__(self, lambda_client: Any) -> None:
        self.client = lambda_client

    def start_child(self, request: ChildStart) -> None:
        name = starter_function_name(request.workflow)
        try:
            response = self.client.invoke(
                FunctionName=name, InvocationType="Event", Payload=json.dumps(request.to_payload()).encode()
            )
        except Exception as exc:  # botocore's error types vary by cause; all mean "not accepted"
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code == "ResourceNotFoundException":
                raise InvocationRefused(
                    f"the starter of child workflow {request.workflow!r} ({name}) does not exist: deploy "
                    "that workflow's stack"
                ) from exc
            raise DispatchError(f"could not invoke {name}: {exc}") from exc
        if response.get("StatusCode") != 202:
            raise DispatchError(f"invoking {name} returned status {response.get('StatusCode')}")
