"""A workflow's starter function, invoked and answered synchronously: how ``Client.aws`` reaches
the runs of a deployed stack without database access (``runtime.handlers.starter`` says what it
takes). Its refusals come back typed as the starter raised them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from runtime.definition.input_check import InputRefused
from runtime.errors import OperationRefused, RunError, RunNotFound, StoreUnavailable

STARTER_ROLE = "starter"


def starter_function(workflow: str) -> str:
    """The starter's physical name (``constructs.workflow.function_name``)."""
    return f"{workflow}-{STARTER_ROLE}"


_REFUSALS: Mapping[str, type[RunError]] = {"RunNotFound": RunNotFound, "OperationRefused": OperationRefused}


class StarterInvoker:
    """Invokes ``<workflow>-starter`` with ``InvocationType=RequestResponse``."""

    def __init__(self, lambda_client: Any) -> None:
        self.client = lambda_client

    def call(self, workflow: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """The starter's answer to ``request``; a refusal raises the error it names."""
        name = starter_function(workflow)
        try:
            response = self.client.invoke(
                FunctionName=name, InvocationType="RequestResponse", Payload=json.dumps(request).encode()
            )
        except Exception as exc:  # botocore's errors vary by cause: none reached the starter
            raise StoreUnavailable(f"could not invoke {name}: {exc}") from exc
        body = response["Payload"].read()
        if response.get("FunctionError"):
            raise StoreUnavailable(f"{name} failed: {body.decode(errors='replace')[:2000]}")
        answer = json.loads(body)
        if not isinstance(answer, dict):
            raise StoreUnavailable(f"{name} answered {answer!r}, not an object")
        if "error" in answer:
            if answer.get("error_type") == InputRefused.__name__:
                raise InputRefused(workflow, [str(problem) for problem in answer.get("problems", ())])
            raise _REFUSALS.get(str(answer.get("error_type")), RunError)(str(answer["error"]))
        return answer
