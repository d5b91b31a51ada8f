"""What an ``invoke`` job calls on this machine: its ``local`` stand-in, in the function's place.

The job runs the very handler it runs in Lambda (``runtime.service.invoke_job``); only the
invoker differs. The stand-in gets what the function would get (the job's event, or its
``payload``) and answers as the function would: its return value is the answer, and what it
raises is a function error named by the exception's type, as Lambda reports an ``errorType``.
A job without a stand-in fails each attempt saying so."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

from runtime.aws.http import UrllibClient
from runtime.definition.model import Job
from runtime.ports import Invocation
from runtime.service.call_job import call_parameters
from runtime.service.http_job import http_handler
from runtime.service.invoke_job import invoke_handler, named_error
from runtime.service.job_attempt import HandlerFailed, UserHandler


class StandIn:
    """A ``FunctionInvoker`` that calls the stand-in's handler (in a worker of its own, or in
    this process), with a Lambda context of the stand-in's own."""

    def __init__(self, handler: UserHandler, context_of: Callable[[str], Any]) -> None:
        self.handler = handler
        self.context_of = context_of
        """The Lambda context of one invocation of the stand-in, by its request id."""

    def invoke(self, function: str, payload: bytes) -> Invocation:
        request_id = uuid.uuid4().hex
        try:
            answer: Any = self.handler(json.loads(payload), self.context_of(request_id))
        except HandlerFailed as exc:  # raised in a worker: its description is "Type: message"
            kind, _, message = exc.description.partition(": ")
            return _function_error(kind, message.split("\nTraceback")[0], request_id)
        except Exception as exc:  # the stand-in's error is the function's, as Lambda reports it
            return _function_error(type(exc).__name__, str(exc), request_id)
        return Invocation(json.dumps(answer).encode(), None, request_id)


def _function_error(kind: str, message: str, request_id: str) -> Invocation:
    error = {"errorType": kind, "errorMessage": message}
    return Invocation(json.dumps(error).encode(), "Unhandled", request_id)


def stand_in_job(job: Job) -> Job | None:
    """The job as its stand-in runs: its ``local`` file as its code; None without one."""
    if job.local is None:
        return None
    return replace(job, code=job.local, invoke=None, payload=None, call=None, local=None)


def without_code(
    job: Job, load: Callable[[Job], UserHandler], context_for: Callable[[Job, str], Any]
) -> UserHandler | None:
    """The handler on this machine of a job that runs no code of its own: an ``http`` job sends
    its request, an ``invoke`` or ``call`` job calls its stand-in (loaded with ``load``, given a
    Lambda context of its own by ``context_for``) or fails saying it has none. None for any other
    job."""
    if job.http is not None:
        return send_locally(job)
    if job.call is None and job.invoke is None:
        return None
    stand_in = stand_in_job(job)
    if stand_in is None:
        return _no_stand_in(job)
    invoker = StandIn(load(stand_in), partial(context_for, stand_in))
    if job.invoke is not None:
        return invoke_handler(invoker, job.invoke, job.payload)
    return _call_locally(job, invoker)


def _no_stand_in(job: Job) -> UserHandler:
    does = f"invokes {job.invoke}" if job.call is None else f"calls {job.call.service} {job.call.action}"

    def no_stand_in(event: dict[str, Any], context: Any) -> Any:
        raise named_error(
            "NoLocalStandIn",
            f"job {job.name!r} {does}, which does not run on this machine: give it "
            "'local: <a .py with handler(event, context)>' in the spec",
        )

    return no_stand_in


def _call_locally(job: Job, invoker: StandIn) -> UserHandler:
    """A ``call`` job's stand-in gets ``{service, action, params}`` (the parameters as boto3
    would get them) and answers in the service's place."""
    assert job.call is not None
    call = job.call

    def make(event: dict[str, Any], context: Any) -> Any:
        request = {"service": call.service, "action": call.action, "params": call_parameters(call, event)}
        answer = invoker.invoke(call.resource, json.dumps(request, default=str).encode())
        if answer.function_error:
            error = json.loads(answer.payload)
            raise named_error(str(error.get("errorType")), str(error.get("errorMessage")))
        return json.loads(answer.payload)

    return make


def secret_variable(secret: str) -> str:
    """The environment variable that holds an ``http`` job's secret on this machine:
    ``WORKFLOWS_SECRET_`` and its name (the last part of an ARN, without Secrets Manager's six
    characters), upper-cased, every other character ``_``."""
    name = secret.split(":secret:")[-1]
    if secret.startswith("arn:"):
        name = re.sub(r"-[A-Za-z0-9]{6}$", "", name)
    return "WORKFLOWS_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def local_secret(secret: str) -> str:
    """An ``http`` job's secret on this machine, from ``secret_variable(secret)``."""
    variable = secret_variable(secret)
    value = os.environ.get(variable)
    if value is None:
        raise named_error(
            "NoLocalSecret", f"the secret {secret!r} is not on this machine: set {variable} to its value"
        )
    return value


def send_locally(job: Job) -> UserHandler:
    """The handler of an ``http`` job on this machine: the same request, for real, with its secret
    from the environment."""
    assert job.http is not None
    return http_handler(UrllibClient(), job.http, local_secret)
