"""The runs page: runs newest first, filtered, one page at a time, with counts by state.

A page is a keyset page: the next one starts at the creation time (and ids) of the last run
shown, so page 1,000 costs what page 1 does. Every query names its states (all four when not
filtered) and bounds ``createdAt``, which is what the run indexes (``runtime.store.mongo.RUN_INDEXES``)
serve newest first on MongoDB: one range per state, merged. No ``hint``: MongoDB's planner picks
those indexes by itself, and SecantusDB (the embedded server), which scans rather than reads
index ranges in order, answers faster without one. The text search is a filter on top of that
read: it stops once a page is full, so a common word costs what no search costs and a rare one
reads the runs until it has a page.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import PyMongoError

from runtime.documents.listing import SUMMARY_FIELDS, RunSummary, runs_search_query, summary_from_document
from runtime.documents.run import CREATED_AT
from runtime.errors import RunError, StoreError
from runtime.statuses import RunState
from runtime.store.mongo import DESC, MongoStore

PAGE_SIZE = 50


@dataclass(frozen=True, kw_only=True)
class RunFilters:
    """What the runs page asks for; every field is optional."""

    workflow: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None


@dataclass(frozen=True, kw_only=True)
class RunsPage:
    runs: list[RunSummary]
    counts: dict[str, int]
    """Runs by state under the filters (all pages, not just this one); the state filter aside,
    so the page tells how many of each state the other filters select."""
    next_page: str | None
    """The cursor of the page after this one; None on the last page."""


def encode_cursor(created_at: datetime, run_ids: list[str]) -> str:
    text = json.dumps([created_at.isoformat(), run_ids], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, list[str]]:
    """The position a cursor names; a ``RunError`` when it is not one this module made."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, run_ids = json.loads(text)
        position = datetime.fromisoformat(created)
        if not isinstance(run_ids, list) or not all(isinstance(run_id, str) for run_id in run_ids):
            raise ValueError("the ids are not a list of strings")
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise RunError(f"page cursor {cursor!r} is not one the console made: {exc}") from exc
    return position if position.tzinfo else position.replace(tzinfo=UTC), run_ids


def _query(filters: RunFilters, state: str | None, before: tuple[datetime, list[str]] | None) -> Any:
    return runs_search_query(filters.workflow, state, filters.since, filters.until, filters.text, before)


def count_by_state(store: MongoStore, filters: RunFilters) -> dict[str, int]:
    try:
        return {
            state.value: store.runs.count_documents(_query(filters, state.value, None)) for state in RunState
        }
    except PyMongoError as exc:
        raise StoreError(f"could not count runs: {exc}") from exc


def runs_page(
    store: MongoStore, filters: RunFilters, cursor: str | None = None, size: int = PAGE_SIZE
) -> RunsPage:
    """One page of runs under ``filters``, starting after ``cursor`` (None: the newest)."""
    if filters.status is not None and filters.status not in RunState.__members__.values():
        states = ", ".join(state.value for state in RunState)
        raise RunError(f"unknown run status {filters.status!r}: use one of {states}")
    before = None if cursor is None else decode_cursor(cursor)
    # One more than a page tells whether there is a next page without counting.
    try:
        documents = list(
            store.runs.find(_query(filters, filters.status, before), dict.fromkeys(SUMMARY_FIELDS, 1))
            .sort(CREATED_AT, DESC)
            .limit(size + 1)
        )
    except PyMongoError as exc:
        raise StoreError(f"could not list runs: {exc}") from exc
    runs = [summary_from_document(document) for document in documents[:size]]
    next_page = None
    if len(documents) > size and runs and runs[-1].created_at is not None:
        last = runs[-1].created_at
        same_time = [run.run_id for run in runs if run.created_at == last]
        if before is not None and before[0] == last:
            same_time += before[1]
        next_page = encode_cursor(last, same_time)
    return RunsPage(runs=runs, counts=count_by_state(store, filters), next_page=next_page)
