"""Why a run with failure handlers is running them: the ``failure`` of its run document, and what
each handler's event carries as ``failure``; how a run whose exit handlers run ends (``exit``).

Standard library only: the handlers import it inside Lambda.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtime.statuses import CANCELLED, FAILED, FailureReason


@dataclass(frozen=True, kw_only=True)
class Failure:
    """What ended the run's normal course: a job's last attempt failed or the run's deadline
    passed (``reason`` ``failed``), or someone cancelled it (``cancelled``). Set by the decision
    that starts the handlers; the run ends so once they have finished."""

    reason: FailureReason
    phase: str
    """The phase the run was in; a redrive goes on from there."""
    job: str | None = None
    """The job that failed (None for a cancel, or a failure of the run itself: its deadline)."""
    attempt: int | None = None
    error: str
    """The run's error once it ends (``job 'x' failed after 3 attempt(s): ...``, ``cancelled``)."""
    caused_by: str
    """Key of the event that started the handlers: a redelivery of it changes nothing."""
    cancel_reason: str | None = None
    """Why, as the person who cancelled said it."""

    def to_event(self) -> dict[str, Any]:
        """The ``failure`` a handler's event carries."""
        return {
            "phase": self.phase,
            "job": self.job,
            "attempt": self.attempt,
            "error": self.error,
            "reason": self.reason,
        }

    def to_document(self) -> dict[str, Any]:
        return self.to_event() | {"causedBy": self.caused_by, "cancelReason": self.cancel_reason}


@dataclass(frozen=True, kw_only=True)
class Exit:
    """How the run ends, decided when its exit handlers (the spec's ``on_exit`` jobs) start: it
    ends so once they have finished, whatever they did."""

    status: str
    """``succeeded``, ``failed`` or ``cancelled`` (a ``RunState``)."""
    error: str | None
    phase: str
    """The phase the run was in (the failure's, after failure handlers); a redrive goes on from
    there."""
    caused_by: str
    """Key of the event that started the exit handlers: a redelivery of it changes nothing."""
    cancel_reason: str | None = None

    def to_document(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "error": self.error,
            "phase": self.phase,
            "causedBy": self.caused_by,
            "cancelReason": self.cancel_reason,
        }


def exit_from_document(document: Mapping[str, Any] | None) -> Exit | None:
    if document is None:
        return None
    return Exit(
        status=document["status"],
        error=document.get("error"),
        phase=document["phase"],
        caused_by=document["causedBy"],
        cancel_reason=document.get("cancelReason"),
    )


def failure_from_document(document: Mapping[str, Any] | None) -> Failure | None:
    if document is None:
        return None
    return Failure(
        reason=CANCELLED if document["reason"] == CANCELLED else FAILED,
        phase=document["phase"],
        job=document.get("job"),
        attempt=document.get("attempt"),
        error=document["error"],
        caused_by=document["causedBy"],
        cancel_reason=document.get("cancelReason"),
    )
