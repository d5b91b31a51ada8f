"""What an ``invoke`` job runs in place of code: a call to an existing Lambda function, in any
runtime and unmodified, whose answer is the job's output (docs/spec.md, "Jobs that call what you
have").

The job function is the job wrapper with this as its handler: it leases the attempt, reports it
and applies the retry policy exactly as for code, so every rule of a job holds (``when``, joins,
``timeout``, ``for_each``, ``allow_failure``, versions pinned per run). The function gets the job's
event (or what ``payload`` selects of ``{input, results, item, index}``). A function error
becomes the attempt's error named by the function's ``errorType`` (so ``retry.on:
[CardDeclined]`` retries a Node function's ``CardDeclined``), and Lambda refusing the call
(throttled, not found, not permitted) one named by Lambda's error code
(``TooManyRequestsException``, ...)."""

from __future__ import annotations

import json
import logging
from typing import Any

import jmespath

from runtime.ports import FunctionInvoker, InvokeRefused
from runtime.service.job_attempt import UserHandler

log = logging.getLogger(__name__)

UNNAMED_ERROR = "FunctionError"
"""The error's name when the function's answer does not name its type."""


class InvokedFunctionError(Exception):
    """The base of the errors an invoked function answered with: each is raised as a subclass
    named by the function's ``errorType``, which is what the attempt's error starts with."""


def named_error(name: str, message: str) -> InvokedFunctionError:
    """An ``InvokedFunctionError`` whose class is called ``name``."""
    kind = type(name or UNNAMED_ERROR, (InvokedFunctionError,), {})
    return kind(message)


def payload_of(event: dict[str, Any], expression: str | None) -> Any:
    """What the function is called with: the job's event, or what ``expression`` selects."""
    if expression is None:
        return event
    data = {name: event.get(name) for name in ("input", "results", "item", "index")}
    return jmespath.search(expression, data)


def invoke_handler(invoker: FunctionInvoker, function: str, payload: str | None) -> UserHandler:
    """The handler of an ``invoke`` job that calls ``function``."""

    def call(event: dict[str, Any], context: Any) -> Any:
        body = json.dumps(payload_of(event, payload)).encode()
        try:
            answer = invoker.invoke(function, body)
        except InvokeRefused as exc:
            raise named_error(exc.code, f"Lambda did not run {function}: {exc}") from None
        log.info("invoked %s (request %s)", function, answer.request_id)
        text = answer.payload.decode("utf-8", errors="replace")
        if answer.function_error:
            raise _function_error(function, answer.request_id, text)
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise named_error("NotJSON", f"{function} answered {text[:200]!r}, which is not JSON") from None

    return call


def _function_error(function: str, request_id: str | None, text: str) -> InvokedFunctionError:
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return named_error(UNNAMED_ERROR, f"{function} failed (request {request_id}): {text[:2000]}")
    kind = str(document.get("errorType") or UNNAMED_ERROR)
    message = str(document.get("errorMessage") or "")
    return named_error(kind, f"{message} ({function}, request {request_id})")
