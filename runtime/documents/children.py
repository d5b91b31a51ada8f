"""Child runs, as stored and as sent: the ``parent`` field of a child's run document (the parent
attempt it runs as), the child's run id (derived from that attempt, so a repeated start finds
the run it started), and the request that starts a child (``ChildStart``), which travels from
the parent's orchestrator to the child workflow's starter. Standard library only: the starter
imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtime.errors import EventError

PARENT = "parent"
"""The run document's field naming the parent attempt of a child run."""
PARENT_RUN_ID = f"{PARENT}.runId"
"""What the children of a run are found by (``status`` and the console list them)."""

CHILD_SEPARATOR = "."
"""Joins a child's run id to its parent's: ``<parent>.<job>.<attempt>[.<item>]``. Job names have
no dots, so the id reads back unambiguously."""

START_CHILD = "start_child"
"""The starter's action that starts a child run (``ChildStart.to_payload``)."""


def child_run_id(parent_run_id: str, job: str, attempt: int, index: int | None = None) -> str:
    """The run id of the child that attempt ``attempt`` of ``job`` (item ``index`` of a
    ``for_each``) runs: the same for every delivery of that attempt, another for every retry."""
    parts = [parent_run_id, job, str(attempt)]
    if index is not None:
        parts.append(str(index))
    return CHILD_SEPARATOR.join(parts)


def is_run_or_child(run_id: str, of: str) -> bool:
    """Whether ``run_id`` is run ``of`` or one of its children (or theirs), by the derived id."""
    return run_id == of or run_id.startswith(of + CHILD_SEPARATOR)


@dataclass(frozen=True, kw_only=True)
class ParentLink:
    """The parent attempt a child run runs as: whose end its own end is reported to."""

    run_id: str
    workflow: str
    phase: str
    job: str
    attempt: int
    index: int | None = None

    def to_document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "runId": self.run_id,
            "workflow": self.workflow,
            "phase": self.phase,
            "job": self.job,
            "attempt": self.attempt,
        }
        if self.index is not None:
            document["index"] = self.index
        return document

    @property
    def child_run_id(self) -> str:
        return child_run_id(self.run_id, self.job, self.attempt, self.index)


def parent_from_document(document: object, where: str = "parent") -> ParentLink | None:
    """A ``ParentLink`` as ``to_document`` wrote it; None when there is none."""
    if document is None:
        return None
    if not isinstance(document, Mapping):
        raise EventError(f"{where} must be an object naming the parent attempt, got {document!r}")
    try:
        index = document.get("index")
        link = ParentLink(
            run_id=str(document["runId"]),
            workflow=str(document["workflow"]),
            phase=str(document["phase"]),
            job=str(document["job"]),
            attempt=int(document["attempt"]),
            index=None if index is None else int(index),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise EventError(
            f"{where} needs runId, workflow, phase, job and attempt (an integer), got {document!r}"
        ) from exc
    return link


@dataclass(frozen=True, kw_only=True)
class ChildStart:
    """What starts a child run: its workflow, its input, and the parent attempt with that
    attempt's key, which proves the request comes from the control plane that dispatched it."""

    workflow: str
    input: Any
    parent: ParentLink
    attempt_key: str | None = None
    resume: str | None = None
    """A redriven parent's: the child run of the attempt before, which this attempt redrives
    (when it failed or was cancelled) rather than starting a new child."""

    @property
    def run_id(self) -> str:
        return self.parent.child_run_id

    def to_payload(self) -> dict[str, Any]:
        """The starter's request (``{"action": "start_child", ...}``)."""
        return {
            "action": START_CHILD,
            "workflow": self.workflow,
            "input": self.input,
            PARENT: self.parent.to_document(),
            "attempt_key": self.attempt_key,
            **({} if self.resume is None else {"resume": self.resume}),
        }


def child_start_from_payload(payload: Mapping[str, Any]) -> ChildStart:
    """The request ``ChildStart.to_payload`` made; ``EventError`` says what is wrong."""
    workflow, key, resume = payload.get("workflow"), payload.get("attempt_key"), payload.get("resume")
    if resume is not None and not isinstance(resume, str):
        raise EventError(f"{START_CHILD}'s resume is a child run id, got {resume!r}")
    if not isinstance(workflow, str) or not workflow:
        raise EventError(f"{START_CHILD} needs the child's workflow, got {workflow!r}")
    if key is not None and not isinstance(key, str):
        raise EventError(f"{START_CHILD}'s attempt_key is a string, got {key!r}")
    parent = parent_from_document(payload.get(PARENT))
    if parent is None:
        raise EventError(f"{START_CHILD} needs the parent attempt the child runs as")
    return ChildStart(
        workflow=workflow, input=payload.get("input"), parent=parent, attempt_key=key, resume=resume
    )


def relinked(parent: ParentLink, attempt: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The guarded write that moves a child run to its parent's ``attempt``: the conditions (it
    still runs as ``parent``'s attempt) and the change."""
    conditions = {
        f"{PARENT}.runId": parent.run_id,
        f"{PARENT}.job": parent.job,
        f"{PARENT}.attempt": parent.attempt,
    }
    return conditions, {f"{PARENT}.attempt": attempt}
