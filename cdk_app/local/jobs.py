"""Job code run in-process: the same ``handler(event, context)`` the job's Lambda function runs,
imported by path from the spec's ``code`` (a ``.py`` file, or a folder with ``handler.py``)."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cdk_app.local.stand_ins import invoke_locally, stand_in_job
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


def _entry_point(job: Job) -> tuple[Path, Path | None]:
    """The file defining the handler, and the folder Lambda would put on ``sys.path`` (if any)."""
    code = Path(str(job.code))
    return (code / FOLDER_ENTRY_POINT, code) if code.is_dir() else (code, None)


def load_job_handler(workflow: str, job: Job) -> UserHandler:
    """The job's ``handler`` function, or the generated stub when the job has no code (an
    ``invoke`` job's: the call of its stand-in, ``cdk_app.local.stand_ins``)."""
    if job.invoke is not None:
        stand_in = stand_in_job(job)
        return invoke_locally(job, None if stand_in is None else load_job_handler(workflow, stand_in))
    if job.code is None:
        return stub_handler
    path, folder = _entry_point(job)
    module_name = f"_local_job_{workflow}_{job.name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RunError(f"{path}: job {job.name!r}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    if folder is not None and str(folder) not in sys.path:
        # Lambda puts the code folder on sys.path: a handler may import the modules beside it.
        sys.path.insert(0, str(folder))
    # Registered before it runs, as an import would: dataclasses and pickling look modules up.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's module may raise anything at import time
        raise RunError(f"{path}: importing job {job.name!r} failed: {type(exc).__name__}: {exc}") from exc
    return _handler_of(module, path, job)


_fresh_loading = threading.Lock()
_job_folders: set[Path] = set()
"""The code folders put on ``sys.path`` for fresh loading: a folder job's modules are imported
by plain names, which two versions of its folder share."""


def load_fresh_job_handler(workflow: str, job: Job) -> UserHandler:
    """The job's handler as its files say now: the module is compiled from its source (not from a
    cached ``.pyc``, which a rewrite within the same second could leave looking current) and the
    modules beside it are imported again. What the dev server runs at each invocation, so fixed
    code runs on the next attempt."""
    if job.invoke is not None:
        stand_in = stand_in_job(job)
        return invoke_locally(job, None if stand_in is None else load_fresh_job_handler(workflow, stand_in))
    if job.code is None:
        return stub_handler
    path, folder = _entry_point(job)
    with _fresh_loading:
        if folder is not None:
            folder = folder.absolute()
            _job_folders.add(folder)
            # The modules beside any job's handler are imported again, from this folder first:
            # another version of the same folder (a snapshot) holds modules of the same names.
            for name, module in list(sys.modules.items()):
                file = Path(getattr(module, "__file__", None) or "/").absolute()
                if any(file.is_relative_to(known) for known in _job_folders):
                    del sys.modules[name]
            with contextlib.suppress(ValueError):
                sys.path.remove(str(folder))
            sys.path.insert(0, str(folder))
        module = types.ModuleType(f"_local_job_{workflow}_{job.name}")
        module.__file__ = str(path)
        sys.modules[module.__name__] = module
        try:
            exec(compile(path.read_bytes(), str(path), "exec"), module.__dict__)  # noqa: S102
        except Exception as exc:  # the user's module may raise anything at import time
            raise RunError(f"{path}: importing job {job.name!r} failed: {type(exc).__name__}: {exc}") from exc
    return _handler_of(module, path, job)


def _handler_of(module: types.ModuleType, path: Path, job: Job) -> UserHandler:
    function = getattr(module, HANDLER_FUNCTION, None)
    if not callable(function):
        raise RunError(f"{path}: job {job.name!r} has no function {HANDLER_FUNCTION}(event, context)")
    handler: UserHandler = function
    return handler


def load_job_handlers(workflow: Workflow) -> dict[str, UserHandler]:
    """Every job's handler, imported once before the run starts, so broken code stops the run
    before anything was recorded."""
    return {job.name: load_job_handler(workflow.name, job) for job in workflow.jobs()}


def on_failure_record(event: JobEvent, request_id: str, error: BaseException) -> dict[str, Any]:
    """The record Lambda sends a function's on-failure destination once it gave up on an
    asynchronous invocation (the shape of ``tests/fixtures/events/lambda-async-on-failure``)."""
    now = datetime.now(UTC)
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
        "responsePayload": {"errorMessage": str(error), "errorType": type(error).__name__},
    }
