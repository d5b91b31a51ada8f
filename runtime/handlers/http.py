"""The handler an ``http`` job's function runs inside the job wrapper (``JOB_HANDLER`` is
``runtime.handlers.http.handler``): the request comes from its environment (``HTTP_REQUEST``),
its secret from Secrets Manager, read once per process."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from runtime import contracts
from runtime.aws.http import UrllibClient
from runtime.definition.model import HttpRequest
from runtime.service.http_job import http_handler
from runtime.store.secrets import read_secret

_state: dict[str, Any] = {}


@functools.cache
def _secret(name: str) -> str:
    return read_secret(name, "the http job's secret")


def handler(event: dict[str, Any], context: Any) -> Any:
    if "send" not in _state:
        request = HttpRequest.from_document(json.loads(os.environ[contracts.HTTP_REQUEST]))
        _state["send"] = http_handler(UrllibClient(), request, _secret)
    return _state["send"](event, context)
