"""What a job's handler may import: the event it is called with, typed.

A handler stays a plain Lambda-style function, ``def handler(event, context)``: returning is
success (the value returned, any JSON value, is the job's output), raising is failure. Typing it is optional::

    from runtime.job import JobEvent

    def handler(event: JobEvent, context: object) -> dict:
        return {"fish": event["results"]["catch_fish"]["fish"], "run": event["run_id"]}

Outputs kept by reference (too large for an event) are already resolved in ``results``: a
handler cannot tell them from the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NotRequired, TypeAlias, TypedDict

__all__ = ["FailureInfo", "Handler", "JobEvent", "JobFailure", "RunOutcome"]


class FailureInfo(TypedDict):
    """What a failure handler (an ``on_failure`` job) is told about the failure."""

    phase: str
    job: str | None
    """The job that failed; None for a cancel, or the run's deadline."""
    attempt: int | None
    error: str
    reason: Literal["failed", "cancelled"]


class JobFailure(TypedDict):
    """A job in ``after`` that failed, as a job that runs after it is told."""

    error: str
    type: str
    """The error's type: the exception's class name, or ``Lambda.Timeout`` / ``Lambda.Error``."""
    attempt: int


class RunOutcome(TypedDict):
    """How the run ends, as an exit handler (an ``on_exit`` job) is told."""

    status: Literal["succeeded", "failed", "cancelled"]
    error: str | None
    failures: dict[str, JobFailure]
    """Every job of the run that failed."""


class JobEvent(TypedDict):
    """The event a job's handler receives."""

    run_id: str
    workflow: str
    phase: str
    job: str
    attempt: int
    """Counts from 1; a retry, or a redrive, is the next number."""
    input: Any
    """The run's input."""
    results: dict[str, Any]
    """The outputs of the jobs this job may read (those in its ``after`` and of earlier phases)."""
    failure: NotRequired[FailureInfo]
    """Only in a failure handler's event."""
    run: NotRequired[RunOutcome]
    """Only in an exit handler's event."""
    failures: NotRequired[dict[str, JobFailure]]
    """Only after a job in ``after`` failed (a join or ``depends`` that runs after a failure):
    that job -> its error, the error's type and the attempt that failed."""
    item: NotRequired[Any]
    """Only for a ``for_each`` job: the item this invocation runs."""
    index: NotRequired[int]
    """Only for a ``for_each`` job: the item's place in the array."""
    callback_token: NotRequired[str]
    """Only for a callback job (``callback: {timeout}``): this attempt's token, to hand to the
    outside system that completes the job (``complete TOKEN --output JSON``). What the handler
    returns is then not the job's output: the attempt waits for the token's completion."""
    traceparent: str
    """The attempt's W3C trace context (``00-<trace id>-<span id>-01``): the run's trace, this
    attempt's span. With OpenTelemetry installed it is also the current span while the handler
    runs; pass it on to services you call to put their spans in the run's trace."""


Handler: TypeAlias = Callable[[JobEvent, Any], Any]
"""A job's handler: the event and Lambda's context in, the job's output (any JSON value, or None:
no output) out."""
