"""What travels in events besides statuses: the event a job function is invoked with
(``JobEvent``) and Lambda's on-failure record of an invocation it gave up on (``FailureRecord``).
Their parsers are ``runtime.documents.envelopes``. Standard library only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.definition.model import ChildWorkflow
from runtime.definition.model_limits import AttemptLimits
from runtime.documents.callbacks import CALLBACK_TOKEN
from runtime.documents.signatures import attempt_slot
from runtime.documents.traces import TRACEPARENT, attempt_traceparent

ATTEMPT_KEY = "attempt_key"


@dataclass(frozen=True, kw_only=True)
class JobEvent:
    """What a job function is invoked with (docs/architecture.md, "Job API")."""

    run_id: str
    workflow: str
    phase: str
    job: str
    attempt: int
    input: Any = None
    results: Mapping[str, Any] = field(default_factory=dict)
    failure: Mapping[str, Any] | None = None
    """A failure handler's: what failed (phase, job, attempt, error) and why the handlers run
    (``reason``: ``failed`` or ``cancelled``)."""
    failures: Mapping[str, Any] = field(default_factory=dict)
    """The jobs in its ``after`` that failed: job -> ``{"error", "type", "attempt"}`` (a job that
    runs after a failure, by its join or ``depends``, gets the error as data)."""
    run: Mapping[str, Any] | None = None
    """An exit handler's: how the run ends, ``{"status", "error", "failures"}``."""
    references: Mapping[str, str] = field(default_factory=dict)
    """Job -> where its output is kept (``runtime.store.outputs``), for results too large for an event:
    the job wrapper puts the values into ``results`` before the user's handler sees them."""
    index: int | None = None
    """The item of a ``for_each`` job this invocation runs, by its place in the array."""
    item: Any = None
    """That item's value."""
    function: str | None = None
    """The function this attempt is invoked on: the one the run's version map names for the job
    (``runtime.documents.deployment``), or None for the job's function by name (its latest
    code). Where the event goes, not part of what the job receives."""
    child: ChildWorkflow | None = None
    """A child workflow job's: the workflow its attempt runs as a child run, started in place of
    invoking a function (``runtime.service.children``); not part of any payload."""
    attempt_key: str | None = field(default=None, repr=False)
    """This attempt's own key for signing its reports (``runtime.documents.signatures``), added
    at dispatch by a control plane that signs; the user's handler never sees it."""
    limits: AttemptLimits | None = field(default=None, repr=False, compare=False)
    """The job's ``concurrency`` and ``rate_limit`` (None: it has neither): the dispatch waits
    for them (``runtime.service.job_limits``). Not part of what the job receives."""

    callback: bool = False
    """A callback job's attempt: a control plane that signs adds its token at dispatch."""
    callback_token: str | None = field(default=None, repr=False)
    """That token (``runtime.documents.callbacks``), which the handler hands to an outside system."""

    @property
    def slot(self) -> str | None:
        """The part of this attempt's ids only holders of its key can name."""
        return None if self.attempt_key is None else attempt_slot(self.attempt_key)

    def to_payload(self) -> dict[str, Any]:
        payload = {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "phase": self.phase,
            "job": self.job,
            "attempt": self.attempt,
            "input": self.input,
            "results": dict(self.results),
        }
        if self.failure is not None:
            payload["failure"] = dict(self.failure)
        if self.run is not None:
            payload["run"] = dict(self.run)
        if self.failures:
            payload["failures"] = {name: dict(failed) for name, failed in self.failures.items()}
        if self.references:
            payload["references"] = dict(self.references)
        if self.index is not None:
            payload |= {"item": self.item, "index": self.index}
        if self.attempt_key is not None:
            payload[ATTEMPT_KEY] = self.attempt_key
        if self.callback_token is not None:
            payload[CALLBACK_TOKEN] = self.callback_token
        payload[TRACEPARENT] = attempt_traceparent(self.run_id, self.job, self.attempt, self.index)
        return payload


@dataclass(frozen=True, kw_only=True)
class FailureRecord:
    """Lambda's on-failure destination record: it gave up on an asynchronous job invocation."""

    job_event: JobEvent
    request_id: str
    condition: str
    error: str
