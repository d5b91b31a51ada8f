"""A job's limits across runs (its ``concurrency`` and ``rate_limit``) as use cases: an attempt
of a limited job is dispatched only while it holds a place under both, and an attempt that must
wait is neither failed nor dispatched: its ticket waits in MongoDB (``runtime.documents.
job_limits``) until something wakes its queue. Nothing polls the runs.

- ``send``: where an attempt is dispatched (the orchestrator, its replay, the fan-out's lanes,
  the reconciler's redispatch of a lost invocation): the attempt's ticket is made (once), and
  the queue's head attempts take the free places and are dispatched, in the order of their run's
  priority, then of arrival. A ticket already granted is dispatched again (a duplicate the job
  wrapper runs once); a released one (the attempt ended) is not.
- ``release``: where an attempt's end is applied (``success``, ``failed``, ``not_run``, the
  failure Lambda reported, a cancel's ``not_run``): its place in flight goes back and the queue
  moves. Repeatable.
- ``wake_due``: the timer sweep's: a queue that waits for the next rate window has a due time
  on its limit document; the sweep moves it then.
- ``repair``: the reconciler's: tickets of attempts that ended without their end reaching the
  orchestrator (a lost event, a run that ended, a crash) are released, and every queue with a
  waiting ticket moves.

A place is taken by one conditional write on the limit document before the ticket is granted and
the attempt sent, and given back only when the attempt has ended, so the attempts in flight (and
started in a window) never exceed the limit, however events are duplicated, reordered or lost; a
crash between the take and the grant is finished by the next move of the queue (the take finds
the place held), and one between the grant and the send by the redispatch of the attempt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import jmespath
import jmespath.exceptions

from runtime.clock import age, as_utc, utcnow
from runtime.definition.model_limits import AttemptLimits, JobConcurrency, RateLimit
from runtime.documents import ID
from runtime.documents import job_limits as doc
from runtime.documents.envelopes import parse_job_event
from runtime.documents.events import ATTEMPT_KEY, JobEvent
from runtime.documents.run import Run
from runtime.documents.slots import key_text
from runtime.documents.traces import TRACEPARENT
from runtime.ports import RunStore
from runtime.statuses import ENDED, JobState

log = logging.getLogger(__name__)

Send = Callable[[JobEvent], None]

MAX_PROMOTIONS = 10_000
"""Bound on the reads of its queue one move makes: more than any limit a spec may set."""

REPAIR_AFTER = timedelta(minutes=1)
"""How long after its grant an attempt's place is the reconciler's to check: its end's release
comes sooner, unless that end was lost."""

LOST_AFTER = timedelta(minutes=3)
"""How long past its job's timeout a granted attempt of a run that has ended (or moved on) may
go without reporting its end before the reconciler gives its place back: Lambda's asynchronous
retry window."""


@dataclass(frozen=True)
class Attempt:
    """One attempt of a job, or of a fan-out's item in its ``round``."""

    run_id: str
    job: str
    index: int | None
    attempt: int
    round: int = 0


def key_of(event: JobEvent, limits: AttemptLimits) -> str:
    """The attempt's key value, as the limit document stores it; an expression that cannot be
    evaluated on this event counts as the key ``null`` (logged)."""
    expression = limits.key
    if expression is None:
        return key_text(None)
    scope = {"input": event.input, "results": dict(event.results), "item": event.item, "index": event.index}
    try:
        return key_text(jmespath.search(expression, scope))
    except jmespath.exceptions.JMESPathError as exc:
        log.warning("job %r: key %r cannot be evaluated: %s; it counts as null", event.job, expression, exc)
        return key_text(None)


def ticket_of(event: JobEvent, round_number: int) -> str:
    return doc.ticket_id(event.run_id, event.job, round_number, event.index, event.attempt)


def send(store: RunStore, event: JobEvent, dispatch: Send) -> None:
    """Dispatch ``event``'s attempt when its job's limits allow, else leave it waiting."""
    limits = event.limits
    if limits is None:
        dispatch(event)
        return
    key = key_of(event, limits)
    limit = doc.limit_id(event.workflow, event.job, key)
    payload = event.to_payload()
    payload.pop(ATTEMPT_KEY, None)  # a secret: the dispatch puts it back
    payload.pop(TRACEPARENT, None)
    stored = {"payload": json.dumps(payload), "function": event.function}
    ticket = store.job_limits().ticket(
        ticket_of(event, limits.round),
        event.workflow,
        event.job,
        key,
        event.run_id,
        stored,
        _limits_document(limits),
        utcnow(),
    )
    state = ticket[doc.STATE]
    if state == doc.GRANTED:
        dispatch(event)
    elif state == doc.WAITING:
        promote(store, limit, dispatch, limits)


def promote(
    store: RunStore,
    limit: str,
    dispatch: Send,
    limits: AttemptLimits | None = None,
    *,
    thorough: bool = False,
) -> int:
    """Dispatch the queue's head attempts while they find places: how many.

    The queue is read in batches of as many waiting tickets as the limit document has places
    free (``limits``: its tickets' limits, as the caller knows them; None: a batch of one, whose
    ticket's limits size the next), and each ticket of a batch, in the queue's order, takes its
    place by its own guarded write; the move stops at the first take refused. A queue with no
    place free is not read: an attempt in flight that ends moves it, and so does the timer of
    the next rate window. ``thorough`` (the reconciler's) reads its head all the same, so a
    waiting ticket whose place was taken before a crash kept it from its grant is granted."""
    tickets = store.job_limits()
    sent = 0
    for _ in range(MAX_PROMOTIONS):
        count = 1
        if limits is not None:
            window = _window(limits, utcnow())
            document = tickets.read_limit(limit)
            count = doc.free_places(document, _concurrency(limits), _rate(limits), window)
            if count == 0 and not thorough:
                _wake_at_next_window(store, limit, limits, window, document)
                break
        batch = tickets.head(limit, max(count, 1))
        for ticket in batch:
            taken = _take_and_send(store, limit, ticket, dispatch)
            if taken is None:
                return sent
            sent += taken
            limits = _limits_of(ticket)
        if len(batch) < count or not batch:
            break
    return sent


def _take_and_send(store: RunStore, limit: str, ticket: Mapping[str, Any], dispatch: Send) -> int | None:
    """The waiting ticket takes its place and its attempt is dispatched: 1; 0 when another move
    of the queue granted it first; None when its place was refused."""
    tickets = store.job_limits()
    event = _event_of(ticket)
    limits = event.limits
    assert limits is not None
    now = utcnow()
    window = _window(limits, now)
    if not tickets.take(limit, ticket[ID], _concurrency(limits), _rate(limits), window):
        _wake_at_next_window(store, limit, limits, window, None)
        return None
    if tickets.grant(ticket[ID], now):
        dispatch(event)
        return 1
    if limits.concurrency is not None:
        _give_back_if_ended(store, limit, ticket[ID], now)
    return 0


def _give_back_if_ended(store: RunStore, limit: str, ticket: str, now: datetime) -> None:
    """A ticket read waiting was granted by another move of the queue meanwhile, and its attempt
    may have ended and given its place back before this move's take put it in flight again:
    then that place goes back (a ticket granted and still running keeps it)."""
    tickets = store.job_limits()
    current = tickets.read_ticket(ticket)
    if current is not None and current[doc.STATE] == doc.RELEASED:
        tickets.release(limit, ticket, now)


def _window(limits: AttemptLimits, now: datetime) -> int:
    return 0 if limits.rate_limit is None else doc.window_of(now, limits.rate_limit.period)


def _concurrency(limits: AttemptLimits) -> int | None:
    return None if limits.concurrency is None else limits.concurrency.limit


def _rate(limits: AttemptLimits) -> int | None:
    return None if limits.rate_limit is None else limits.rate_limit.limit


def _wake_at_next_window(
    store: RunStore, limit: str, limits: AttemptLimits, window: int, document: Mapping[str, Any] | None
) -> None:
    """A queue that waits may wait for the rate window (full): it wakes when the next starts
    (nothing to write when ``document``, the limit document as read, wakes by then already). One
    that waits for an attempt in flight to end is woken by that end (and once more by this timer,
    which finds it waiting still: cheaper than reading which limit held it back)."""
    rate = limits.rate_limit
    if rate is None:
        return
    at = doc.window_start(window + 1, rate.period)
    if doc.wakes_by(document, at):
        return
    workflow, job, key = doc.limit_parts(limit)
    store.job_limits().wake_at(limit, at, workflow, job, key, _limits_document(limits))


def release(store: RunStore, attempt: Attempt, holds_place: bool, dispatch: Send) -> None:
    """The attempt ended: its ticket is released and, when its job has a ``concurrency`` (its
    attempts hold a place in flight), that place is given back and its queue moves; nothing for
    an attempt that had no ticket. A job with a ``rate_limit`` alone only closes the ticket: its
    queue waits for the next window, whose timer moves it. Repeatable."""
    tickets = store.job_limits()
    ticket_id = doc.ticket_id(attempt.run_id, attempt.job, attempt.round, attempt.index, attempt.attempt)
    if not holds_place:
        tickets.release(None, ticket_id, utcnow())
        return
    ticket = tickets.read_ticket(ticket_id)
    if ticket is None:
        return
    tickets.release(ticket[doc.LIMIT_ID], ticket_id, utcnow())
    promote(store, ticket[doc.LIMIT_ID], dispatch, _limits_of(ticket))


def wake_due(store: RunStore, dispatch: Send, now: datetime, workflow: str | None = None) -> int:
    """Move every queue whose rate window has come (of ``workflow``): the attempts dispatched."""
    tickets = store.job_limits()
    sent = 0
    for limit in tickets.due(now, workflow):
        if tickets.woken(limit[ID], limit[doc.WAKE_AT]):
            sent += promote(store, limit[ID], dispatch, _limits_of(limit) if doc.LIMITS in limit else None)
    return sent


@dataclass(frozen=True, kw_only=True)
class LimitRepair:
    released: int = 0
    """Tickets of attempts that had ended, released."""
    started: int = 0
    """Waiting attempts dispatched."""


def repair(store: RunStore, dispatch: Send, now: datetime, workflow: str | None = None) -> LimitRepair:
    """The reconciler's pass over the tickets (of ``workflow``)."""
    tickets = store.job_limits()
    released, limits = 0, {}
    runs: dict[str, Run | None] = {}
    for ticket in tickets.held_tickets(workflow):
        run_id = ticket[doc.RUN_ID]
        if run_id not in runs:
            runs[run_id] = store.read_run(run_id)
        if _has_ended(store, runs[run_id], ticket, now):
            log.warning("reconciler: the attempt of ticket %s had ended; released its place", ticket[ID])
            tickets.release(ticket[doc.LIMIT_ID], ticket[ID], now)
            released += 1
        limits[ticket[doc.LIMIT_ID]] = _limits_of(ticket)
    started = sum(promote(store, limit, dispatch, limits[limit], thorough=True) for limit in sorted(limits))
    return LimitRepair(released=released, started=started)


def _has_ended(store: RunStore, run: Run | None, ticket: Mapping[str, Any], now: datetime) -> bool:
    """Whether the ticket's attempt has ended (or will never run): its run is gone, its end is
    recorded, or its run has ended or moved on and the attempt, if it was sent, is past the time
    it could still be running. A waiting ticket's attempt was never sent (no end to read), and
    one granted less than ``REPAIR_AFTER`` ago is left to its own end's release: a pass reads
    the statuses of the few attempts that may have lost theirs, not of every attempt in flight."""
    if run is None:
        return True
    granted_at = as_utc(ticket.get(doc.GRANTED_AT))
    if ticket[doc.STATE] == doc.GRANTED and granted_at is not None and age(granted_at, now) < REPAIR_AFTER:
        return False
    _, run_id, job, _, index, attempt = json.loads(ticket[ID])
    definition = run.definition.job(job) if job in run.jobs else None
    if ticket[doc.STATE] == doc.WAITING:
        return run.state in ENDED or definition is None
    slot = None
    keys = store.keys
    if keys is not None:
        slot = JobEvent(
            run_id=run_id,
            workflow=run.workflow,
            phase="",
            job=job,
            attempt=attempt,
            attempt_key=keys.attempt_key(run_id, job, attempt, index),
        ).slot
    if definition is not None and store.read_terminal_status(
        run_id, definition.phase, job, attempt, index, slot
    ):
        return True
    record = run.jobs.get(job)
    moved_on = record is None or (
        index is None and (record.attempt != attempt or record.state != JobState.DISPATCHED)
    )
    if run.state not in ENDED and not moved_on:
        return False
    timeout = timedelta(seconds=definition.timeout if definition is not None else 900)
    return granted_at is None or age(granted_at, now) > timeout + LOST_AFTER


def waiting_reasons(store: RunStore, run_id: str) -> dict[tuple[str, int | None], str]:
    """Why each waiting attempt of the run waits, by (job, index): ``rate limit 20/s on charge``,
    ``concurrency 5 on charge with key tenant-42 (3 waiting)``."""
    tickets = store.job_limits()
    reasons: dict[tuple[str, int | None], str] = {}
    counts: dict[str, int] = {}
    for ticket in tickets.waiting_of_run(run_id):
        _, _, job, _, index, _ = json.loads(ticket[ID])
        limit = ticket[doc.LIMIT_ID]
        if limit not in counts:
            counts[limit] = tickets.count_waiting(limit)
        reasons[(job, index)] = describe(
            _limits_of(ticket), job, ticket[doc.KEY], counts[limit], tickets.read_limit(limit)
        )
    return reasons


def job_waits(store: RunStore, run: Run) -> dict[str, str]:
    """Why jobs of the running ``run`` wait for their limits, by job: what ``status`` and the
    console show (``concurrency 5 on charge with key tenant-42 (3 waiting)``; for a fan-out's
    items, how many of this run's wait). Nothing is read for a run whose jobs have no limits."""
    limited = any(job.concurrency is not None or job.rate_limit is not None for job in run.definition.jobs())
    if not limited or run.state in ENDED:
        return {}
    by_job: dict[str, list[tuple[int | None, str]]] = {}
    for (job, index), reason in waiting_reasons(store, run.run_id).items():
        by_job.setdefault(job, []).append((index, reason))
    waits: dict[str, str] = {}
    for job, reasons in by_job.items():
        index, reason = reasons[0]
        waits[job] = reason if index is None else f"{len(reasons)} item(s) wait: {reason}"
    return waits


def describe(limits: AttemptLimits, job: str, key: str, waiting: int, limit: Mapping[str, Any] | None) -> str:
    """Which limit holds the attempt back: the rate when its window is full, else the concurrency."""
    concurrency, rate = limits.concurrency, limits.rate_limit
    full = rate is not None and doc.started_in(limit, doc.window_of(utcnow(), rate.period)) >= rate.limit
    shown = rate if rate is not None and (full or concurrency is None) else concurrency
    assert shown is not None
    return f"{shown.describe(job, key)} ({waiting} waiting)"


def _limits_document(limits: AttemptLimits) -> dict[str, Any]:
    return {
        "concurrency": None if limits.concurrency is None else limits.concurrency.to_document(),
        "rate_limit": None if limits.rate_limit is None else limits.rate_limit.to_document(),
        "priority": limits.priority,
        "round": limits.round,
    }


def _limits_of(ticket: Mapping[str, Any]) -> AttemptLimits:
    stored = ticket[doc.LIMITS]
    concurrency, rate = stored.get("concurrency"), stored.get("rate_limit")
    return AttemptLimits(
        concurrency=None if concurrency is None else JobConcurrency(**concurrency),
        rate_limit=None if rate is None else RateLimit(**rate),
        priority=stored.get("priority", 0),
        round=stored.get("round", 0),
    )


def _event_of(ticket: Mapping[str, Any]) -> JobEvent:
    stored = ticket[doc.EVENT]
    event = parse_job_event(json.loads(stored["payload"]))
    return replace(event, function=stored.get("function"), limits=_limits_of(ticket))
