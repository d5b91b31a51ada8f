"""The job wrapper's use case: running one attempt of a job (``run_attempt``).

It claims the attempt, checks that the run still wants it, calls the user's handler and reports
the attempt's end: ``success`` with the returned JSON value, ``failed`` with the exception, or
``not_run`` when the run had ended or moved on to another attempt. The claim is a lease
(docs/architecture.md, "Invariants", 3): the first invocation of an attempt takes it and renews it
from a heartbeat thread while the user's code runs, and nobody ever takes it over. Any other
invocation of the attempt (a duplicate delivery, whatever request id it carries) waits for the
attempt's end, and records the attempt failed if the lease expires first; it never runs the code.
The end is one terminal report per attempt, so whichever of the claimant, a waiter or the
orchestrator (for an invocation Lambda gave up on) reports first is the attempt's outcome.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import partial
from types import TracebackType
from typing import Any

import bson

from runtime import limits
from runtime.aws.telemetry import observed_call
from runtime.clock import utcnow
from runtime.documents.envelopes import parse_job_event
from runtime.documents.events import JobEvent
from runtime.documents.leases import Lease, lease_id
from runtime.documents.outputs import stored_as_is
from runtime.documents.run import StatusEvent
from runtime.engine.attempts import attempt_blocked
from runtime.errors import EventError
from runtime.ports import HandoffFailed, RunStore, StatusHandoff
from runtime.statuses import StatusName

log = logging.getLogger(__name__)

UserHandler = Callable[[dict[str, Any], Any], Any]


ERROR_TRACE_FRAMES = 8


WAIT_MARGIN_SECONDS = 5.0
"""A waiting invocation stops this long before its own timeout, so Lambda never kills it for
waiting (which would send an on-failure record for an attempt another invocation runs)."""


@dataclass(frozen=True, kw_only=True)
class LeaseSettings:
    duration: timedelta = timedelta(seconds=30)
    """How long a lease holds without renewal: the longest a claimant may stall before its
    attempt is recorded failed."""
    renew_every: timedelta = timedelta(seconds=10)
    """How often the heartbeat renews the lease while the user's code runs."""
    poll_every: timedelta = timedelta(seconds=1)
    """How often an invocation waiting for another's attempt looks again."""
    longest_wait: timedelta = timedelta(seconds=60)
    """How long such an invocation waits at most (never past its own remaining time): long
    enough to see the lease of a claimant that died expire."""


@dataclass(frozen=True, kw_only=True)
class AttemptResult:
    outcome: str
    """``success``, ``failed`` or ``not-run`` (this invocation reported the attempt's end);
    ``superseded`` (it ran the code, but another report had ended the attempt first);
    ``already-finished``; ``lease-expired`` (it found the claimant's lease expired and reported
    the attempt failed); ``left-to-owner`` (the claimant still renews its lease); ``dropped``."""
    output: Any = None
    error: str | None = None


def _status(event: JobEvent, status: StatusName, **fields: Any) -> StatusEvent:
    """A report of this attempt, signed with the attempt's own key when the dispatch gave one
    (docs/architecture.md, "Trust")."""
    report = StatusEvent(
        run_id=event.run_id,
        workflow=event.workflow,
        status=status,
        phase=event.phase,
        job=event.job,
        attempt=event.attempt,
        index=event.index,
        **fields,
    )
    return report if event.attempt_key is None else report.signed_by_attempt(event.attempt_key)


def _lease_id(event: JobEvent) -> str:
    return lease_id(event.run_id, event.job, event.attempt, event.index, event.slot)


def _success(store: RunStore, event: JobEvent, output: Any) -> StatusEvent:
    """The attempt's ``success``: with its output, or with the reference to it when it is too
    large for an event or would not travel as it is (``runtime.store.outputs``)."""
    size = _check_output(output)
    if size <= limits.OUTPUT_INLINE_MAX_BYTES and _travels_as_is(output):
        return _status(event, StatusName.SUCCESS, output=output)
    ref = store.items().outputs.store(_lease_id(event), output, event.workflow)
    return _status(event, StatusName.SUCCESS, output_ref=ref)


def _check_output(output: Any) -> int:
    """The output is any JSON value (None: no output) within ``limits.OUTPUT_MAX_BYTES``: what
    a Lambda function may return. Its size as JSON."""
    if output is None:
        return 0
    try:
        text = json.dumps(output, allow_nan=False)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise TypeError(f"the job's output is not JSON: {exc}") from exc
    problem = _non_string_key(output)
    if problem is not None:
        raise TypeError(f"the job's output {problem}")
    size = len(text.encode())
    if size > limits.OUTPUT_MAX_BYTES:
        raise ValueError(
            f"the job's output is {size:,} bytes of JSON; at most {limits.OUTPUT_MAX_BYTES:,} are kept "
            "(store large results elsewhere, e.g. S3, and return a reference)"
        )
    return size


def _children(value: Any, path: str) -> Iterator[tuple[Any, Any, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item, f"{path}.{key}"
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield index, item, f"{path}[{index}]"


def _non_string_key(output: Any) -> str | None:
    """JSON's objects have string keys; ``json.dumps`` would quietly turn any other into one."""
    pending: list[tuple[Any, str]] = [(output, "$")]
    while pending:
        value, path = pending.pop()
        for key, item, where in _children(value, path):
            if isinstance(value, dict) and not isinstance(key, str):
                return f"has the key {key!r} at {path}: keys are strings in JSON"
            pending.append((item, where))
    return None


def _travels_as_is(output: Any) -> bool:
    """Whether the output can travel in the status and be stored in the run document as it is
    (``stored_as_is``, and BSON encodes it); any other is kept by reference as JSON text."""
    if not stored_as_is(output):
        return False
    try:
        bson.encode({"output": output})
    except (bson.errors.InvalidDocument, OverflowError):
        return False
    return True


class HandlerFailed(Exception):
    """The user's handler raised where this wrapper does not see its traceback (the local runner
    runs job code in a process of its own): ``description`` is what ``describe`` made of the
    exception there."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def describe(exc: BaseException) -> str:
    """An exception as an attempt's ``error``: its type and message (head and tail, when long)
    and the last frames of its traceback, each bounded (docs/architecture.md, "Limits")."""
    if isinstance(exc, HandlerFailed):
        return exc.description
    message = limits.bounded(f"{type(exc).__name__}: {exc}")
    frames = "".join(traceback.format_tb(exc.__traceback__)[-ERROR_TRACE_FRAMES:])
    if not frames:
        return message
    trace = limits.bounded(frames, limits.ERROR_TRACE_MAX_CHARS)
    return f"{message}\nTraceback (last frames):\n{trace}".rstrip()


class Heartbeat:
    """Renews a lease on a daemon thread while the user's code runs. A renewal that fails is
    logged and tried again at the next beat: at worst the lease expires, and the attempt is
    recorded failed rather than run twice."""

    def __init__(
        self, store: RunStore, lease: Lease, settings: LeaseSettings, attempt_key: str | None
    ) -> None:
        self.store = store
        self.lease = lease
        self.attempt_key = attempt_key
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease {lease.lease_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.renew_every.total_seconds()):
            try:
                renewed = replace(self.lease, expires_at=utcnow() + self.settings.duration)
                self.store.renew_lease(renewed, self.attempt_key)
            except Exception as exc:  # the store may fail in any way; the next beat tries again
                log.warning("could not renew the lease %s: %s", self.lease.lease_id, exc)


def run_attempt(
    store: RunStore,
    user_handler: UserHandler,
    raw_event: object,
    context: Any,
    request_id: str,
    lease_settings: LeaseSettings | None = None,
    handoff: StatusHandoff | None = None,
) -> AttemptResult:
    """Run one job attempt at most once, whatever is delivered how often. With ``handoff``
    (``delivery: fast``), the attempt's terminal report is handed to the orchestrator as soon as
    it is recorded."""
    settings = lease_settings or LeaseSettings()
    report = partial(_report, store, handoff=handoff)
    try:
        event = parse_job_event(raw_event)
    except EventError as exc:
        log.warning("dropped a malformed job event: %s", exc)
        return AttemptResult(outcome="dropped", error=str(exc))
    if _terminal_status(store, event) is not None:
        return AttemptResult(outcome="already-finished")
    lease = Lease(
        lease_id=_lease_id(event),
        owner=request_id,
        token=uuid.uuid4().hex,
        expires_at=utcnow() + settings.duration,
        workflow=event.workflow,
    )
    if not store.acquire_lease(lease):
        return _wait_for_end(store, event, context, settings, report)
    with Heartbeat(store, lease, settings, event.attempt_key):
        # Checked once the lease is held: a run that ended before this claim is seen here.
        blocked = attempt_blocked(event, store.read_attempt_state(event.run_id, event.job))
        if blocked is not None:
            log.info("did not run job %s: %s", event.job, blocked)
            return report(_status(event, StatusName.NOT_RUN, error=blocked), "not-run")
        store.record_status(_status(event, StatusName.STARTED, request_id=request_id))
        try:
            output = observed_call(event, user_handler, _user_event(store, event), context)
            success = _success(store, event, output)
        except Exception as exc:  # the user's code may raise anything: that is the job failing
            error = describe(exc)
            log.error("job %s attempt %s of run %s failed: %s", event.job, event.attempt, event.run_id, error)
            return report(_status(event, StatusName.FAILED, error=error), StatusName.FAILED)
        return report(success, StatusName.SUCCESS)


def _terminal_status(store: RunStore, event: JobEvent) -> StatusEvent | None:
    return store.read_terminal_status(
        event.run_id, event.phase, event.job, event.attempt, event.index, event.slot
    )


def _user_event(store: RunStore, event: JobEvent) -> dict[str, Any]:
    """What the user's handler gets: the job event with the values of the results kept by
    reference in ``results`` (a handler cannot tell them from the others), without the attempt's
    key (the wrapper signs the reports)."""
    payload = replace(event, attempt_key=None).to_payload()
    references = payload.pop("references", None)
    if references:
        payload["results"] = store.items().outputs.resolve(payload["results"], references)
    return payload


def _report(
    store: RunStore, status: StatusEvent, outcome: str, *, handoff: StatusHandoff | None
) -> AttemptResult:
    """Record the attempt's one terminal report, then hand it off (when there is a hand-off);
    ``superseded`` when another report came first."""
    if store.record_status(status):
        if handoff is not None:
            _hand_off(handoff, status)
        return AttemptResult(outcome=outcome, output=status.output, error=status.error)
    log.warning("attempt %s of %s had ended already; %s not recorded", status.attempt, status.job, outcome)
    return AttemptResult(outcome="superseded", output=status.output, error=status.error)


def _hand_off(handoff: StatusHandoff, status: StatusEvent) -> None:
    """Never fails the attempt: its report is recorded, and the Atlas trigger delivers it to the
    orchestrator whether or not the hand-off got through."""
    status_id = status.terminal_id
    if status_id is None:
        return
    try:
        handoff.hand_off(status_id)
    except HandoffFailed as exc:
        log.warning(
            "could not hand %s of %s to the orchestrator (the trigger delivers it): %s",
            status.status,
            status.job,
            exc,
        )


def _wait_for_end(
    store: RunStore,
    event: JobEvent,
    context: Any,
    settings: LeaseSettings,
    report: Callable[[StatusEvent, str], AttemptResult],
) -> AttemptResult:
    """Another invocation holds the attempt's lease: wait for the attempt's end, and report the
    attempt failed if the lease expires before it (the claimant died or stalled). Gives up
    waiting, leaving the attempt to the claimant, only while its lease is live: it then reports
    its own end, or Lambda gives up on it and the orchestrator records the failure."""
    deadline = time.monotonic() + _wait_budget(context, settings)
    held_id = _lease_id(event)
    while True:
        if _terminal_status(store, event):
            return AttemptResult(outcome="already-finished")
        held = store.read_lease(held_id, event.attempt_key)
        if held is not None and held.expires_at <= utcnow():
            error = (
                f"the invocation running attempt {event.attempt} of {event.job!r} (request {held.owner}) "
                f"stopped renewing its lease, which expired at {held.expires_at:%Y-%m-%d %H:%M:%S} UTC"
            )
            result = report(_status(event, StatusName.FAILED, error=error), "lease-expired")
            return result if result.outcome == "lease-expired" else AttemptResult(outcome="already-finished")
        if time.monotonic() >= deadline:
            log.info("left attempt %s of %s to the invocation holding its lease", event.attempt, event.job)
            return AttemptResult(outcome="left-to-owner")
        time.sleep(settings.poll_every.total_seconds())


def _wait_budget(context: Any, settings: LeaseSettings) -> float:
    budget = settings.longest_wait.total_seconds()
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        budget = min(budget, remaining() / 1000 - WAIT_MARGIN_SECONDS)
    return max(0.0, budget)
