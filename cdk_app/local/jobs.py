"""Job code as Lambda loads it: the same ``handler(event, context)`` the job's Lambda function runs,
imported by path from the spec's ``code`` (a ``.py`` file, or a folder with ``handler.py``), in a
job's worker process (``cdk_app.local.processes``) or, for benchmarks, in this one."""

from __future__ import annotations

import importlib.util
import sys
import time
import types
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from cdk_app.local.stand_ins import without_code
from runtime.definition.model import JOB_ASYNC_RETRIES, Job, Workflow, job_function_name
from runtime.documents.events import JobEvent
from runtime.errors import RunError
from runtime.handlers.job import stub_handler
from runtime.service.job_attempt import UserHandler

JOB_INVOCATION_TRIES = JOB_ASYNC_RETRIES + 1
"""Lambda's tries of one job invocation, as the deployed functions are configured: it gives up
on the first that raises, and the on-failure destination reports it."""

FOLDER_ENTRY_POINT = "handler.py"
HANDLER_FUNCTION = "handler"


@dataclass(frozen=True, kw_only=True)
class LocalContext:
    """The parts of Lambda's context object that handler code commonly reads."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int
    timeout: int
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.started + self.timeout - time.monotonic()) * 1000))


def context_for(workflow: str, job: Job, request_id: str) -> LocalContext:
    return LocalContext(
        function_name=job_function_name(workflow, job.name),
        aws_request_id=request_id,
        memory_limit_in_mb=job.memory,
        timeout=job.timeout,
    )


def load_job_handler(workflow: str, job: Job) -> UserHandler:
    """The job's ``handler`` function, or the generated stub when the job has no code (an
    ``invoke`` job's: the call of its stand-in, ``cdk_app.local.stand_ins``)."""
    handler = without_code(job, partial(load_job_handler, workflow), partial(context_for, workflow))
    if handler is not None:
        return handler
    if job.code is None:
        return stub_handler
    return load_handler(workflow, job.name, Path(str(job.code)))


def load_handler(workflow: str, name: str, code: Path) -> UserHandler:
    """The ``handler`` function of job ``name``'s ``code`` (a ``.py`` file, or a folder with
    ``handler.py``); ``RunError`` saying why when it cannot be loaded."""
    path, folder = (code / FOLDER_ENTRY_POINT, code) if code.is_dir() else (code, None)
    module_name = f"_local_job_{workflow}_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RunError(f"{path}: job {name!r}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    if folder is not None and str(folder) not in sys.path:
        # Lambda puts the code folder on sys.path: a handler may import the modules beside it.
        sys.path.insert(0, str(folder))
    # Registered before it runs, as an import would: dataclasses and pickling look modules up.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's module may raise anything at import time
        raise RunError(f"{path}: importing job {name!r} failed: {type(exc).__name__}: {exc}") from exc
    return _handler_of(module, path, name)


def _handler_of(module: types.ModuleType, path: Path, name: str) -> UserHandler:
    function = getattr(module, HANDLER_FUNCTION, None)
    if not callable(function):
        raise RunError(f"{path}: job {name!r} has no function {HANDLER_FUNCTION}(event, context)")
    handler: UserHandler = function
    return handler


def load_job_handlers(workflow: Workflow) -> dict[str, UserHandler]:
    """Every job's handler, imported once before the run starts, so broken code stops the run
    before anything was recorded."""
    return {job.name: load_job_handler(workflow.name, job) for job in workflow.jobs()}


class FunctionDied(BaseException):
    """The job's function ended an invocation without the wrapper's report: the handler took its
    runtime down (a ``BaseException`` that is not an ``Exception``), the process exited or
    crashed, or Lambda stopped it at its timeout. A ``BaseException``, as the wrapper did not
    survive it either: it passes ``run_attempt`` by, and Lambda's on-failure destination reports
    the invocation, with ``error_type`` and the message."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def on_failure_record(event: JobEvent, request_id: str, error: BaseException) -> dict[str, Any]:
    """The record Lambda sends a function's on-failure destination once it gave up on an
    asynchronous invocation (the shape of ``tests/fixtures/events/lambda-async-on-failure``)."""
    now = datetime.now(UTC)
    error_type = error.error_type if isinstance(error, FunctionDied) else type(error).__name__
    return {
        "version": "1.0",
        "timestamp": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": request_id,
            "functionArn": f"arn:aws:lambda:local:000000000000:function:"
            f"{job_function_name(event.workflow, event.job)}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": JOB_INVOCATION_TRIES,
        },
        "requestPayload": event.to_payload(),
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": str(error), "errorType": error_type},
    }
