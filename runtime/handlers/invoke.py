"""The handler an ``invoke`` job's function runs inside the job wrapper (``JOB_HANDLER`` is
``runtime.handlers.invoke.handler``): the existing function and the payload come from its
environment (``INVOKE_FUNCTION``, ``INVOKE_PAYLOAD``), the Lambda client is made once."""

from __future__ import annotations

import os
from typing import Any

from runtime import contracts
from runtime.aws.invoke import LambdaInvoker, invoke_client
from runtime.service.invoke_job import invoke_handler

_state: dict[str, Any] = {}


def handler(event: dict[str, Any], context: Any) -> Any:
    if "call" not in _state:
        _state["call"] = invoke_handler(
            LambdaInvoker(invoke_client()),
            os.environ[contracts.INVOKE_FUNCTION],
            os.environ.get(contracts.INVOKE_PAYLOAD),
        )
    return _state["call"](event, context)
