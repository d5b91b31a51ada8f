"""Run concurrency (a workflow's ``concurrency``): the slot documents in ``slots`` and the queue
of runs waiting for one, spelled here.

One slot document per (workflow, key value) holds the ids of the runs that hold a slot
(``holders``) and counts the runs that arrived (``arrivals``, the queue's order). A slot is taken
by one conditional single-document write that adds the run's id while the set has fewer than
``limit`` ids (or already has it: a duplicate takes nothing more), and released by ``$pull``; a
run goes from ``queued`` to ``running`` only while it holds a slot, and releases it only once it
has ended, so the runs running never outnumber ``limit``. The queue is the run documents
themselves: ``queued`` runs of the key, lowest ``queueRank`` (the priority, aged) first, then by
``arrival``.

Standard library only: the handlers import it inside Lambda.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.documents import ID, WORKFLOW
from runtime.documents.run import (
    ARRIVAL,
    CONCURRENCY_KEY,
    CREATED_AT,
    QUEUE_RANK,
    RUN_STATE,
    Document,
    Fields,
)
from runtime.statuses import RunState

KEY, HOLDERS, ARRIVALS, LIMIT = "key", "holders", "arrivals", "limit"


def key_text(value: Any) -> str:
    """A key's value as the slot document and the run store it: a string as it is, anything else
    as compact JSON (so the key ``null`` of a run without one, or of a global limit, is ``null``)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))


def slot_id(workflow: str, key: str) -> str:
    """The slot document of ``workflow``'s runs with ``key``."""
    return json.dumps([workflow, key], separators=(",", ":"))


def arrival_update(workflow: str, key: str) -> Document:
    """Counts one more arrival (made when missing): the value after it is the run's place."""
    return {"$inc": {ARRIVALS: 1}, "$setOnInsert": {WORKFLOW: workflow, KEY: key, HOLDERS: []}}


def take_filter(workflow: str, key: str, run_id: str, limit: int) -> Document:
    """Matches the slot document while ``run_id`` may hold a slot: it holds one already, or
    fewer than ``limit`` runs do. With ``upsert``, a full document makes the write fail on its
    ``_id`` (nothing is taken) and a missing one is made with the run as its first holder."""
    return {
        ID: slot_id(workflow, key),
        "$or": [{HOLDERS: run_id}, {f"{HOLDERS}.{limit - 1}": {"$exists": False}}],
    }


def take_update(workflow: str, key: str, run_id: str, limit: int) -> Document:
    return {
        "$addToSet": {HOLDERS: run_id},
        "$set": {LIMIT: limit},
        "$setOnInsert": {WORKFLOW: workflow, KEY: key, ARRIVALS: 0},
    }


def release_update(run_id: str) -> Document:
    """Gives the run's slot back; nothing when it holds none (a duplicate release)."""
    return {"$pull": {HOLDERS: run_id}}


def holders_of(document: dict[str, Any] | None) -> list[str]:
    return [] if document is None else list(document.get(HOLDERS) or [])


def slots_query(workflow: str | None) -> Document:
    """Selects the slot documents (of ``workflow``) that some run holds."""
    query: Document = {f"{HOLDERS}.0": {"$exists": True}}
    return query if workflow is None else query | {WORKFLOW: workflow}


def queued_query(workflow: str | None, key: str | None = None) -> Document:
    """Selects the queued runs (of ``workflow``, of ``key``)."""
    query: Document = {RUN_STATE: RunState.QUEUED.value}
    query |= {} if workflow is None else {WORKFLOW: workflow}
    return query | ({} if key is None else {CONCURRENCY_KEY: key})


QUEUE_ORDER = [(QUEUE_RANK, 1), (ARRIVAL, 1)]
"""The order queued runs start in: lowest rank (highest priority, aged), then first arrived. Each
arrival of a key is counted once (``arrival_update``), so no two queued runs tie and the queue's
index serves the whole sort: finding the head reads one index entry, however long the queue."""

QUEUE_INDEX_NAME = "queued_runs_by_rank"
QUEUE_INDEX: tuple[list[tuple[str, int]], dict[str, Any]] = (
    [(WORKFLOW, 1), (CONCURRENCY_KEY, 1), (RUN_STATE, 1), (QUEUE_RANK, 1), (ARRIVAL, 1)],
    {"partialFilterExpression": {RUN_STATE: RunState.QUEUED.value}},
)
"""The queue's index on ``state-machines``: only queued runs are in it (none on the hot path)."""


def queue_projection() -> Document:
    return {ID: 1, WORKFLOW: 1, CONCURRENCY_KEY: 1}


def holder_states_query(run_ids: list[str]) -> tuple[Document, Document]:
    """Selects the runs holding slots, projecting their state."""
    return {ID: {"$in": run_ids}}, {RUN_STATE: 1, CREATED_AT: 1}


def promoted() -> Fields:
    """What a queued run that took a slot changes to: running (its start is recorded next)."""
    return {RUN_STATE: RunState.RUNNING.value}


def key_of_document(document: dict[str, Any]) -> tuple[str, str]:
    """(workflow, key) of a slot document or a queued run read with ``queue_projection``."""
    return str(document[WORKFLOW]), str(document[KEY] if KEY in document else document[CONCURRENCY_KEY])
