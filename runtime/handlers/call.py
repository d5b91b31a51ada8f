"""The handler a ``call`` job's function runs inside the job wrapper (``JOB_HANDLER`` is
``runtime.handlers.call.handler``): the call comes from its environment (``CALL_REQUEST``), its
boto3 client is made once, without retries of its own (the job's retry policy decides)."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from runtime import contracts
from runtime.definition.model import ServiceCall
from runtime.service.call_job import call_handler

_state: dict[str, Any] = {}


@functools.cache
def _client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(service, config=Config(retries={"total_max_attempts": 1}))


def handler(event: dict[str, Any], context: Any) -> Any:
    if "make" not in _state:
        _state["make"] = call_handler(_client, ServiceCall(**json.loads(os.environ[contracts.CALL_REQUEST])))
    return _state["make"](event, context)
