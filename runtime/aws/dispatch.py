"""The ``Dispatcher`` port's AWS adapter: a job attempt is an asynchronous Lambda invocation of
the job's function, and the errors no retry gets past are told apart from the rest."""

from __future__ import annotations

import json
from typing import Any

from runtime.definition.model import job_function_name
from runtime.documents.events import JobEvent
from runtime.ports import DispatchError, InvocationRefused

REFUSALS = {
    "ResourceNotFoundException": "the job's function {name} does not exist (was the job removed from the "
    "spec while this run was in flight?)",
    "RequestEntityTooLargeException": "the event for {name} is larger than Lambda accepts (the outputs of "
    "the jobs it runs after are passed in it)",
    "InvalidRequestContentException": "Lambda refused the event for {name} as invalid: {error}",
}
"""Lambda's error codes that no retry can get past, with what to tell people."""


class LambdaDispatcher:
    """Invokes the function the run's version map names for the job (a qualified ARN), or
    ``<workflow>-job-<job>`` for a run without one, with ``InvocationType=Event``."""

    def __init__(self, lambda_client: Any) -> None:
        self.client = lambda_client

    def dispatch(self, event: JobEvent) -> None:
        name = event.function or job_function_name(event.workflow, event.job)
        try:
            response = self.client.invoke(
                FunctionName=name, InvocationType="Event", Payload=json.dumps(event.to_payload()).encode()
            )
        except Exception as exc:  # botocore's error types vary by cause; all mean "not accepted"
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in REFUSALS:
                raise InvocationRefused(REFUSALS[code].format(name=name, error=exc)) from exc
            raise DispatchError(f"could not invoke {name}: {exc}") from exc
        if response.get("StatusCode") != 202:
            raise DispatchError(f"invoking {name} returned status {response.get('StatusCode')}")
