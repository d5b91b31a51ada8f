"""A job's limits across runs (its ``concurrency`` and ``rate_limit``): the limit documents and
the tickets of attempts in ``slots``, spelled here.

One limit document per (workflow, job, key value) holds the tickets of the attempts in flight
(``inFlight``, for ``concurrency``) and of the attempts started in the current window
(``window``, ``started``, for ``rate_limit``). An attempt takes its place by one conditional
single-document write that adds its ticket while the sets have room (or hold it already: a
duplicate takes nothing more); it gives its place back (``$pull``) only once it has ended.

A ticket per attempt says where the attempt is: ``waiting`` (with the event it is dispatched
with, its run's priority and its arrival: the queue's order), ``granted`` (dispatched) or
``released`` (it ended). A ticket is made once, by an upsert that sets nothing on a ticket that
exists, so an attempt dispatched again never waits or takes a place twice.

Fields of run concurrency's slot documents (``runtime.documents.slots``) are never used here, so
its repair never reads a limit document as a run's slot.

Standard library only: the handlers import it inside Lambda.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.clock import as_utc
from runtime.documents import ID, WORKFLOW

Document = dict[str, Any]

KIND, JOB, KEY, RUN_ID = "kind", "job", "key", "runId"
LIMIT_KIND, TICKET_KIND = "job_limit", "job_ticket"
IN_FLIGHT, WINDOW, STARTED, WAKE_AT = "inFlight", "window", "started", "wakeAt"
LIMIT_ID, STATE, PRIORITY, ARRIVAL, EVENT, LIMITS = (
    "limitId",
    "state",
    "priority",
    "arrival",
    "event",
    "limits",
)
GRANTED_AT, RELEASED_AT = "grantedAt", "releasedAt"
WAITING, GRANTED, RELEASED = "waiting", "granted", "released"


def limit_id(workflow: str, job: str, key: str) -> str:
    """The limit document of ``workflow``'s ``job`` with ``key``."""
    return json.dumps(["job", workflow, job, key], separators=(",", ":"))


def limit_parts(limit: str) -> tuple[str, str, str]:
    """The workflow, job and key of a limit document's ``_id`` (``limit_id``)."""
    _, workflow, job, key = json.loads(limit)
    return workflow, job, key


def ticket_id(run_id: str, job: str, round_number: int, index: int | None, attempt: int) -> str:
    """The ticket of one attempt: of a job, or of an item of a fan-out in its ``round``."""
    return json.dumps(["ticket", run_id, job, round_number, index, attempt], separators=(",", ":"))


def window_of(now: datetime, period: float) -> int:
    """The rate window ``now`` is in: windows of ``period`` seconds counted from the epoch."""
    return math.floor(now.timestamp() / period)


def window_start(window: int, period: float) -> datetime:
    return datetime.fromtimestamp(0, UTC) + timedelta(seconds=window * period)


# -- tickets -------------------------------------------------------------------------------------


def ticket_update(
    workflow: str, job: str, key: str, run_id: str, event: Document, limits: Document, now: datetime
) -> Document:
    """Makes the attempt's ticket, waiting, when it has none; changes nothing on one it has."""
    return {
        "$setOnInsert": {
            KIND: TICKET_KIND,
            LIMIT_ID: limit_id(workflow, job, key),
            WORKFLOW: workflow,
            JOB: job,
            KEY: key,
            RUN_ID: run_id,
            STATE: WAITING,
            PRIORITY: limits[PRIORITY],
            ARRIVAL: now,
            EVENT: event,
            LIMITS: limits,
        }
    }


def ticket_state(document: Document | None) -> str | None:
    return None if document is None else str(document[STATE])


def waiting_query(limit: str) -> Document:
    """The waiting tickets of a limit document (``kind`` too: it is the queue index's partial
    filter, which MongoDB uses only for a query that implies it)."""
    return {KIND: TICKET_KIND, LIMIT_ID: limit, STATE: WAITING}


QUEUE_ORDER = [(PRIORITY, -1), (ARRIVAL, 1), (ID, 1)]
"""The order waiting attempts are dispatched in: highest run priority, then first come."""

QUEUE_INDEX: tuple[list[tuple[str, int]], dict[str, Any]] = (
    [(LIMIT_ID, 1), (STATE, 1), (PRIORITY, -1), (ARRIVAL, 1), (ID, 1)],
    {"partialFilterExpression": {KIND: TICKET_KIND}},
)
"""The waiting queue's index on ``slots`` (tickets only). ``kind`` is its partial filter, not a
key: the embedded server (SecantusDB) takes an index for an equality query only when the query's
fields other than the partial filter's lead the index, and read every document of ``slots``
(released tickets too) for each look at a queue's head while ``kind`` led it."""

QUEUE_INDEX_NAME = "job_queue"
"""A name of its own, beside ``OLD_QUEUE_INDEX``."""

OLD_QUEUE_INDEX = "job_tickets"
"""The queue's index while ``kind`` led it, which no query uses since: dropped by
``ensure_indexes``, as every write of a ticket kept it."""

MOST_PER_READ = 100
"""The most waiting tickets one read of a queue returns: as many as its limit has free places,
up to this."""


def granted(ticket: str, now: datetime) -> tuple[Document, Document]:
    """A waiting ticket becomes granted (its attempt is dispatched next)."""
    return {ID: ticket, STATE: WAITING}, {"$set": {STATE: GRANTED, GRANTED_AT: now}}


def released(ticket: str, now: datetime) -> tuple[Document, Document]:
    """The attempt ended: its ticket no longer waits nor holds, and keeps no event."""
    return (
        {ID: ticket, STATE: {"$ne": RELEASED}},
        {"$set": {STATE: RELEASED, RELEASED_AT: now}, "$unset": {EVENT: ""}},
    )


def run_waiting_query(run_id: str) -> Document:
    """The waiting tickets of one run's attempts."""
    return {RUN_ID: run_id, KIND: TICKET_KIND, STATE: WAITING}


def held_tickets_query(workflow: str | None) -> Document:
    """Tickets that wait or hold a place (of ``workflow``): the reconciler's to check."""
    query: Document = {KIND: TICKET_KIND, STATE: {"$in": [WAITING, GRANTED]}}
    return query if workflow is None else query | {WORKFLOW: workflow}


# -- limit documents -----------------------------------------------------------------------------


def take(
    limit: str, ticket: str, concurrency: int | None, rate: int | None, window: int, new_window: bool
) -> tuple[Document, Document]:
    """The write that gives ``ticket`` a place under both limits at once, or matches nothing.
    ``new_window``: the write for a document whose rate window has passed (it starts ``window``
    with this ticket alone); else the one for a document in ``window`` (or with no rate limit)."""
    conditions: list[Document] = []
    update: Document = {"$set": {KIND: LIMIT_KIND}}
    if concurrency is not None:
        conditions.append(
            {"$or": [{IN_FLIGHT: ticket}, {f"{IN_FLIGHT}.{concurrency - 1}": {"$exists": False}}]}
        )
        update["$addToSet"] = {IN_FLIGHT: ticket}
    if rate is not None and new_window:
        conditions.append({"$or": [{WINDOW: {"$lt": window}}, {WINDOW: {"$exists": False}}]})
        update["$set"] |= {WINDOW: window, STARTED: [ticket]}
    elif rate is not None:
        conditions.append({WINDOW: window})
        conditions.append({"$or": [{STARTED: ticket}, {f"{STARTED}.{rate - 1}": {"$exists": False}}]})
        update.setdefault("$addToSet", {})[STARTED] = ticket
    query: Document = {ID: limit}
    if conditions:
        query["$and"] = conditions
    return query, update


def take_with_room(
    limit: str, ticket: str, concurrency: int | None, rate: int | None, window: int, new_window: bool
) -> tuple[Document, Document]:
    """``take``'s write for the usual case, where the limit document exists and has room under
    both limits, spelled with field conditions only: the embedded server's write planner finds
    the document by its ``_id`` only when no operator (``$and``, ``$or``) stands at the query's
    top level, and scans every document of ``slots`` otherwise. It matches nothing where ``take``
    may still succeed (the ticket holds its place already, or the document is new), which
    ``take`` itself then decides."""
    query: Document = {ID: limit}
    update: Document = {"$set": {KIND: LIMIT_KIND}}
    if rate is not None and new_window:
        query[WINDOW] = {"$not": {"$gte": window}}
        update["$set"] |= {WINDOW: window, STARTED: [ticket]}
    elif rate is not None:
        query[WINDOW] = window
        query[f"{STARTED}.{rate - 1}"] = {"$exists": False}
        update["$addToSet"] = {STARTED: ticket}
    if concurrency is not None:
        query[f"{IN_FLIGHT}.{concurrency - 1}"] = {"$exists": False}
        update.setdefault("$addToSet", {})[IN_FLIGHT] = ticket
    return query, update


def free_places(
    document: Mapping[str, Any] | None, concurrency: int | None, rate: int | None, window: int
) -> int:
    """The places the limit document has free in ``window``, up to ``MOST_PER_READ``: how many
    waiting tickets one read of its queue returns."""
    free = MOST_PER_READ
    if concurrency is not None:
        free = min(free, concurrency - len((document or {}).get(IN_FLIGHT) or []))
    if rate is not None:
        free = min(free, rate - started_in(document, window))
    return max(free, 0)


def wakes_by(document: Mapping[str, Any] | None, at: datetime) -> bool:
    """Whether the limit document's queue is to be woken at ``at`` or sooner already."""
    wake = as_utc(document.get(WAKE_AT)) if document is not None else None
    return isinstance(wake, datetime) and wake <= at


def give_back(ticket: str) -> Document:
    """The ended attempt's place in flight goes back; its start in the window stays counted."""
    return {"$pull": {IN_FLIGHT: ticket}}


def wake_update(at: datetime, workflow: str, job: str, key: str, limits: Document) -> Document:
    """Wake the queue at ``at`` (the next window) unless it is to wake sooner; ``limits`` (its
    tickets' ``LIMITS``) tell the sweep that wakes it how many places it may find free."""
    return {
        "$min": {WAKE_AT: at},
        "$set": {KIND: LIMIT_KIND, WORKFLOW: workflow, JOB: job, KEY: key, LIMITS: limits},
    }


WAKE_INDEX: tuple[list[tuple[str, int]], dict[str, Any]] = (
    [(KIND, 1), (WORKFLOW, 1), (WAKE_AT, 1)],
    {"partialFilterExpression": {KIND: LIMIT_KIND}},
)
"""The index of the queues' wakes on ``slots`` (limit documents only): the local timer sweep looks
for the due queues of its workflow several times a second, and read every ticket without it."""

WAKE_INDEX_NAME = "job_queue_wakes"


def due_query(now: datetime, workflow: str | None) -> Document:
    query: Document = {KIND: LIMIT_KIND, WAKE_AT: {"$lte": now}}
    return query if workflow is None else query | {WORKFLOW: workflow}


def next_wake_query(workflow: str | None) -> Document:
    query: Document = {KIND: LIMIT_KIND, WAKE_AT: {"$exists": True}}
    return query if workflow is None else query | {WORKFLOW: workflow}


def woken(limit: str, at: datetime) -> tuple[Document, Document]:
    """Clears a due wake (the wake as read: one set sooner meanwhile stays). Unset, not null:
    the next wake's ``$min`` would keep a null, which sorts before every date."""
    return {ID: limit, WAKE_AT: at}, {"$unset": {WAKE_AT: ""}}


def started_in(document: Mapping[str, Any] | None, window: int) -> int:
    """Tickets started in ``window`` by the document."""
    if document is None or document.get(WINDOW) != window:
        return 0
    return len(document.get(STARTED) or [])
