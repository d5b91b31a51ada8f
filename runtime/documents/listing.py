"""The run listings' reading of the run documents: which runs a listing selects (``runs_query``,
and the console's ``runs_search_query`` with its text search and keyset pages) and the
``RunSummary`` each line shows, read through the ``SUMMARY_FIELDS`` projection so a listing never
loads a run's definition or jobs.

Standard library only: the handlers import it inside Lambda.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runtime.clock import as_utc, from_iso, iso
from runtime.documents import ID
from runtime.documents.deployment import DEPLOY_ID
from runtime.documents.run import (
    CREATED_AT,
    DEPLOY_ID_FIELD,
    DEPLOYMENT,
    ERROR,
    INPUT_TEXT,
    PHASE,
    RUN_STATE,
    UPDATED_AT,
    WORKFLOW,
    Document,
)
from runtime.statuses import RunState


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """One line of a run listing: the run document without its definition and jobs."""

    run_id: str
    workflow: str
    status: RunState
    phase: str
    created_at: datetime | None
    updated_at: datetime | None
    error: str | None
    deploy_id: str | None = None
    """The deploy whose versions the run invokes; None for a run without a version map."""

    def to_json(self) -> dict[str, Any]:
        """One run of a listing as JSON: a line of ``runs --json``, of the console's runs page
        and of the starter's ``list``."""
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status.value,
            "phase": self.phase,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "error": self.error,
            "deploy_id": self.deploy_id,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> RunSummary:
        return cls(
            run_id=document["run_id"],
            workflow=document["workflow"],
            status=RunState(document["status"]),
            phase=document["phase"],
            created_at=from_iso(document.get("created_at")),
            updated_at=from_iso(document.get("updated_at")),
            error=document.get("error"),
            deploy_id=document.get("deploy_id"),
        )


SUMMARY_FIELDS = (ID, WORKFLOW, RUN_STATE, PHASE, CREATED_AT, UPDATED_AT, ERROR, DEPLOY_ID_FIELD)
"""What a listing reads of each run document (its projection)."""


def summary_from_document(document: Mapping[str, Any]) -> RunSummary:
    return RunSummary(
        run_id=document[ID],
        workflow=document[WORKFLOW],
        status=RunState(document[RUN_STATE]),
        phase=document[PHASE],
        created_at=as_utc(document.get(CREATED_AT)),
        updated_at=as_utc(document.get(UPDATED_AT)),
        error=document.get(ERROR),
        deploy_id=(document.get(DEPLOYMENT) or {}).get(DEPLOY_ID),
    )


@dataclass(frozen=True)
class PagePosition:
    """Where the next page of a listing starts (keyset pagination): right after the runs created
    at ``created_at`` whose ids are ``run_ids`` (the last ones a page showed), older ones next."""

    created_at: datetime
    run_ids: tuple[str, ...]

    @classmethod
    def after(cls, page: Sequence[RunSummary], previous: PagePosition | None = None) -> PagePosition | None:
        """The position after ``page`` (None when its last run has no creation time); the ids
        of ``previous`` count too when the page ended at the same time, so a run never shows twice."""
        if not page or page[-1].created_at is None:
            return None
        last = page[-1].created_at
        ids = [run.run_id for run in page if run.created_at == last]
        if previous is not None and previous.created_at == last:
            ids = [*previous.run_ids, *ids]
        return cls(last, tuple(ids))

    def to_json(self) -> dict[str, Any]:
        return {"created_at": iso(self.created_at), "run_ids": list(self.run_ids)}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> PagePosition:
        created_at = from_iso(document.get("created_at"))
        if created_at is None:
            raise ValueError("a page position needs created_at")
        return cls(created_at, tuple(str(run_id) for run_id in document.get("run_ids", ())))


def _after_position(query: Document, position: PagePosition | None) -> Document:
    if position is not None:
        query[CREATED_AT] = {**dict(query.get(CREATED_AT) or {}), "$lte": position.created_at}
        query[ID] = {"$nin": list(position.run_ids)}
    return query


def runs_query(
    workflow: str | None,
    state: str | None,
    since: datetime | None,
    deploy_id: str | None = None,
    position: PagePosition | None = None,
) -> Document:
    """Selects the runs of a listing: of ``workflow``, in ``state``, created at ``since`` or later,
    pinned to the deploy ``deploy_id``. Without a state it names all four, so the state-first
    indexes serve every listing."""
    query: Document = {}
    if deploy_id is not None:
        query[DEPLOY_ID_FIELD] = deploy_id
    if workflow is not None:
        query[WORKFLOW] = workflow
    query[RUN_STATE] = state if state is not None else {"$in": [value.value for value in RunState]}
    if since is not None:
        query[CREATED_AT] = {"$gte": since}
    return _after_position(query, position)


def runs_search_query(
    workflow: str | None,
    state: str | None,
    since: datetime | None,
    until: datetime | None,
    text: str | None,
    before: tuple[datetime, list[str]] | None,
) -> Document:
    """``runs_query`` with the console's filters: created before ``until``, ``text`` anywhere in
    the run id or the input (case-insensitive, taken literally), and a page's position
    ``before``: the creation time of the last run shown and the ids shown with that time, so the
    next page starts right after them without counting what came before (keyset pagination)."""
    position = None if before is None else PagePosition(before[0], tuple(before[1]))
    query = runs_query(workflow, state, since, position=position)
    if until is not None:
        query[CREATED_AT] = {**dict(query.get(CREATED_AT) or {}), "$lt": until}
    if text:
        pattern = {"$regex": re.escape(text), "$options": "i"}
        query["$or"] = [{ID: pattern}, {INPUT_TEXT: pattern}]
    return query
