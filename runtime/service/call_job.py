"""What a ``call`` job runs in place of code: one AWS service call (``runtime.definition.call.CALLS``)
made with boto3, whose response is the job's output.

The job wrapper leases, reports and retries it as it does code. The parameters are what
``params`` gives (an object), with the ``resource`` put where the call wants it (``QueueUrl``,
``TopicArn``, each entry's ``EventBusName``, ``FunctionName``, ``stateMachineArn``). The output
is the response without its ``ResponseMetadata`` (times as ISO text); a Lambda invocation's
``Payload`` is read and parsed, and its ``FunctionError`` fails the attempt as an ``invoke`` job's
does. An error AWS answers fails it named by its code (``ThrottlingException``, ...), so
``retry.on`` can name it; ``put_events`` entries AWS refused (``FailedEntryCount``) fail it as
``FailedEntries``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jmespath

from runtime.definition.model import ServiceCall
from runtime.definition.services import CALLS, queue_url
from runtime.service.invoke_job import named_error
from runtime.service.job_attempt import UserHandler


def call_parameters(call: ServiceCall, event: dict[str, Any]) -> dict[str, Any]:
    """The call's keyword arguments for boto3."""
    kind = CALLS[(call.service, call.action)]
    data = {name: event.get(name) for name in ("input", "results", "item", "index")}
    given = {} if call.params is None else jmespath.search(call.params, data)
    if not isinstance(given, dict):
        raise named_error(
            "InvalidParameters", f"params {call.params!r} gave {json.dumps(given)}, not an object"
        )
    parameters = dict(given)
    if kind.client == "events":
        entries = parameters.get("Entries")
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise named_error("InvalidParameters", "put_events takes params giving {Entries: [ ... ]}")
        parameters["Entries"] = [{**entry, kind.resource_parameter: call.resource} for entry in entries]
    elif kind.client == "sqs":
        parameters[kind.resource_parameter] = queue_url(call.resource)
    else:
        parameters[kind.resource_parameter] = call.resource
    if (
        kind.client == "lambda"
        and "Payload" in parameters
        and not isinstance(parameters["Payload"], bytes | str)
    ):
        parameters["Payload"] = json.dumps(parameters["Payload"])
    return parameters


def output_of(call: ServiceCall, response: dict[str, Any]) -> Any:
    """The response as the job's output."""
    answer = {key: value for key, value in response.items() if key != "ResponseMetadata"}
    if call.service == "lambda":
        body = answer.pop("Payload").read() if "Payload" in answer else b""
        text = body.decode("utf-8", errors="replace")
        payload = json.loads(text) if text.strip() else None
        if answer.get("FunctionError"):
            kind = (payload or {}).get("errorType") if isinstance(payload, dict) else None
            message = (payload or {}).get("errorMessage", text) if isinstance(payload, dict) else text
            raise named_error(str(kind or "FunctionError"), f"{message} ({call.resource})")
        answer["Payload"] = payload
    if call.service == "events" and answer.get("FailedEntryCount"):
        failed = [entry for entry in answer.get("Entries", []) if entry.get("ErrorCode")]
        raise named_error(
            "FailedEntries", f"EventBridge refused {answer['FailedEntryCount']} entries: {failed}"
        )
    return json.loads(json.dumps(answer, default=str))


def call_handler(client_of: Callable[[str], Any], call: ServiceCall) -> UserHandler:
    """The handler of a ``call`` job; ``client_of`` makes the boto3 client of a service."""
    kind = CALLS[(call.service, call.action)]

    def make(event: dict[str, Any], context: Any) -> Any:
        parameters = call_parameters(call, event)
        try:
            response = getattr(client_of(kind.client), kind.method)(**parameters)
        except Exception as exc:  # botocore's ClientError and its connection errors alike
            code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
            raise named_error(str(code), f"{call.service} {call.action} on {call.resource}: {exc}") from None
        return output_of(call, response)

    return make
