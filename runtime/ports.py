"""What the runtime needs from the world, as protocols: the run store, the items of fan-outs and
the outputs kept by reference (MongoDB adapters in ``runtime.store``), job dispatch and
notifications (AWS adapters in ``runtime.aws``). The local cloud plugs in-process adapters and
fault-injecting wrappers into the same ports. Protocols and their errors only: no I/O here."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from runtime.documents.children import ChildStart
from runtime.documents.events import JobEvent
from runtime.documents.items import ClaimedItem, FailedItem, Lane, LaneView
from runtime.documents.leases import Lease
from runtime.documents.listing import PagePosition, RunSummary
from runtime.documents.run import Fields, JobRecord, Run, StatusEvent
from runtime.documents.sent_events import SentEvent
from runtime.documents.signatures import StatusKeys
from runtime.errors import WorkflowError
from runtime.statuses import RunState, StatusName

Document = dict[str, Any]

log = logging.getLogger(__name__)


class DispatchError(WorkflowError):
    """A job invocation was not accepted."""


class HandoffFailed(WorkflowError):
    """A job function's hand-off of its report to the orchestrator (``delivery: fast``) did not
    get through; the Atlas trigger delivers the report anyway."""


class InvocationRefused(DispatchError):
    """Lambda refuses this invocation for good: the job's function does not exist (a job removed
    from the spec while a run that started with it was in flight) or the payload is too large or
    not valid. Retrying cannot help, so it is reported as the attempt's failure and the run ends
    instead of waiting."""


class NotifyError(WorkflowError):
    """A notification was not delivered."""


class RunStore(Protocol):
    """Run documents and the status log, read and written as the engine's typed values. Every
    write that changes a run is conditional on what the writer read (``conditions``, as the
    engine planned them), so concurrent handlers never overwrite each other."""

    def insert_run(self, run: Run) -> bool:
        """Store a new run; False when a run with its id exists already."""

    def read_run(self, run_id: str) -> Run | None: ...

    def read_attempt_state(self, run_id: str, job: str) -> tuple[RunState, JobRecord | None] | None:
        """The run's state and ``job``'s record (None: no such run), without the rest of the run."""

    def apply_transition(
        self, run_id: str, conditions: Fields, changes: Fields, earliest: Fields | None = None
    ) -> bool:
        """Make ``changes`` while the run matches ``conditions``; False when another writer got
        there first."""

    def record_job_success(self, run_id: str, conditions: Fields, changes: Fields) -> Run | None:
        """Record a completion while the run matches ``conditions`` (the job still dispatched at
        that attempt): the run after the write, or None when the completion was recorded before
        (or is stale)."""

    @property
    def keys(self) -> StatusKeys | None:
        """The control plane's status key when this store writes as the control plane (an
        operator's or a system function's); None in a job function."""

    def record_status(self, event: StatusEvent) -> bool:
        """Append a status; False when the same report was recorded before. An unsigned status is
        signed with ``keys`` when the store has them (docs/architecture.md, "Trust")."""

    def read_status(
        self,
        run_id: str,
        phase: str | None,
        job: str | None,
        status: StatusName,
        attempt: int,
        index: int | None = None,
    ) -> StatusEvent | None:
        """One status by its unique key (``index``: of an item of a ``for_each`` job)."""

    def read_terminal_status(
        self,
        run_id: str,
        phase: str,
        job: str,
        attempt: int,
        index: int | None = None,
        slot: str | None = None,
    ) -> StatusEvent | None:
        """The ``success`` or ``failed`` report of one attempt (of item ``index``), if any; ``slot``
        is the attempt's (``JobEvent.slot``), which a store holding the status keys works out."""

    def read_status_by_id(self, status_id: str) -> StatusEvent | None:
        """The status whose document ``_id`` is ``status_id``, if recorded (a terminal report,
        handed off by the job function that recorded it)."""

    def read_statuses(self, run_id: str) -> list[StatusEvent]:
        """The run's statuses in the order they were recorded."""

    def acquire_lease(self, lease: Lease) -> bool:
        """Take the lease of an attempt; False when it was taken before (by anyone)."""

    def read_lease(self, lease_id: str, attempt_key: str | None = None) -> Lease | None:
        """The lease, expiring at its latest renewal for its token that ``attempt_key`` (when
        given) authenticates."""

    def renew_lease(self, lease: Lease, attempt_key: str | None = None) -> None:
        """Extend the lease to ``lease.expires_at`` for ``lease.token``, MAC'd by ``attempt_key``
        (when the attempt has one): an insert, never an update (``runtime.documents.leases``)."""

    def find_runs(
        self,
        workflow: str | None,
        state: str | None,
        since: datetime | None,
        limit: int,
        deploy_id: str | None = None,
        position: PagePosition | None = None,
    ) -> list[RunSummary]:
        """Runs newest first (by creation), of ``workflow``, in ``state``, created since ``since``,
        pinned to the deploy ``deploy_id``, after the page ``position`` when given."""

    def stale_runs(self, updated_before: datetime, limit: int, workflow: str | None = None) -> list[str]:
        """Ids of running runs (of ``workflow``) last written before ``updated_before``, the
        longest idle first."""

    def read_operations(self, since: datetime, workflow: str | None = None) -> list[StatusEvent]:
        """Cancel and redrive requests (of runs of ``workflow``) recorded since ``since``, oldest first."""

    def expire_statuses(self, run_id: str, expire_at: datetime | None) -> None:
        """Have the run's statuses deleted at ``expire_at`` (None: kept, a redriven run)."""

    def items(self) -> ItemStore:
        """The items of ``for_each`` jobs and the outputs kept by reference, on the same database."""

    def runs_due(self, now: datetime, limit: int, workflow: str | None = None) -> list[str]:
        """Ids of running runs (of ``workflow``) with a timer due at ``now``, the earliest first."""

    def next_wake(self, workflow: str | None = None) -> datetime | None:
        """The earliest time a running run (of ``workflow``) has a timer due; None: no timers."""

    def set_wake(self, run_id: str, version: int, due: datetime | None) -> bool:
        """Set when the run's next timer is due, while the run is still at ``version``."""

    def slots(self) -> SlotStore:
        """The slots of run concurrency and the queue of runs waiting for one, on the same database."""

    def sent_events(self) -> SentEvents:
        """Events sent to workflows, kept for event jobs that start waiting later."""

    def job_limits(self) -> JobLimitStore:
        """A job's limits across runs: limit documents and the tickets of attempts."""


class NotificationClaims(Protocol):
    """The notifier's claims: one message per status document, however often it is delivered."""

    def claim_notification(
        self, event: StatusEvent, request_id: str, retry_after: timedelta, lease: timedelta
    ) -> bool:
        """True when the handling ``request_id`` is to send the message about ``event``: nobody
        claimed it yet, or the claim was never marked sent and is either this request's own (a
        retry after a crash) at least ``retry_after`` old, or anybody's at least ``lease`` old."""

    def notification_sent(self, event: StatusEvent) -> None:
        """The message about ``event`` went out: no delivery sends it again."""

    def release_notification(self, event: StatusEvent, request_id: str) -> None:
        """Give up the claim of ``request_id`` (publishing failed), so a retry sends at once."""


class Dispatcher(Protocol):
    def dispatch(self, event: JobEvent) -> None:
        """Start one job attempt asynchronously; at least once."""


class StatusHandoff(Protocol):
    def hand_off(self, status_id: str) -> None:
        """Ask the orchestrator to apply the recorded status ``status_id`` now (``delivery:
        fast``), waiting a short bounded time at most; ``HandoffFailed`` when it could not be
        asked."""


class ChildStarter(Protocol):
    def start_child(self, request: ChildStart) -> None:
        """Start the child run ``request`` names (idempotent by its run id); at least once.
        ``InvocationRefused`` when it can never be started (no such workflow deployed)."""


class Notifier(Protocol):
    def publish(self, subject: str, message: str) -> None: ...


class Outputs(Protocol):
    """Outputs kept by reference, too large to travel in an event (``runtime.store.outputs``)."""

    def store(self, output_id: str, value: Any, workflow: str) -> str:
        """Keep ``value``, an output of a run of ``workflow``; its reference."""

    def load(self, ref: str) -> Any: ...

    def load_within(self, ref: str, budget: int) -> tuple[Any, int]:
        """The value and its size as JSON, when within ``budget`` bytes; ``OutputTooLarge``
        (before loading it) otherwise."""

    def resolve(self, results: Mapping[str, Any], references: Mapping[str, str]) -> dict[str, Any]:
        """``results`` with the value of each reference put in."""


class JobLimitStore(Protocol):
    """A job's ``concurrency`` and ``rate_limit``: limit documents taken and given back by
    guarded single-document writes, and a ticket per attempt (``runtime.store.job_limits``,
    ``runtime.documents.job_limits``)."""

    def ticket(
        self,
        ticket: str,
        workflow: str,
        job: str,
        key: str,
        run_id: str,
        event: Document,
        limits: Document,
        now: datetime,
    ) -> Document:
        """The attempt's ticket, made waiting when it had none (one it has is left as it is)."""

    def read_ticket(self, ticket: str) -> Document | None: ...

    def head(self, limit: str, count: int) -> list[Document]:
        """The first ``count`` waiting tickets of the limit document: highest priority, then
        first come."""

    def count_waiting(self, limit: str) -> int: ...

    def take(self, limit: str, ticket: str, concurrency: int | None, rate: int | None, window: int) -> bool:
        """Whether ``ticket`` holds its place under both limits after this write."""

    def grant(self, ticket: str, now: datetime) -> bool:
        """A waiting ticket becomes granted; False when it was not waiting."""

    def release(self, limit: str | None, ticket: str, now: datetime) -> None:
        """The attempt ended: its ticket released, its place in flight given back (``limit``
        None: it holds none); repeatable."""

    def read_limit(self, limit: str) -> Document | None: ...

    def wake_at(self, limit: str, at: datetime, workflow: str, job: str, key: str, limits: Document) -> None:
        """Have the queue woken at ``at`` (or sooner, when set sooner); ``limits``: its tickets'."""

    def due(self, now: datetime, workflow: str | None) -> list[Document]:
        """Limit documents whose wake is due at ``now``."""

    def woken(self, limit: str, at: datetime) -> bool:
        """Clear the wake read as ``at``; False when another sweep did, or it moved."""

    def next_wake(self, workflow: str | None) -> datetime | None: ...

    def waiting_of_run(self, run_id: str) -> list[Document]: ...

    def held_tickets(self, workflow: str | None) -> list[Document]:
        """Tickets waiting or granted, without their events."""


class SlotStore(Protocol):
    """Run concurrency: slot documents taken and released by guarded single-document writes, and
    the queue of ``queued`` runs (``runtime.store.slots``, ``runtime.documents.slots``)."""

    def arrive(self, workflow: str, key: str) -> int:
        """The next arrival number of the key (from 1): the queue's order within a priority."""

    def take(self, workflow: str, key: str, run_id: str, limit: int) -> bool:
        """Whether ``run_id`` holds a slot after this write (it took one, or held one already)."""

    def release(self, workflow: str, key: str, run_id: str) -> None:
        """Give the run's slot back (nothing when it holds none)."""

    def holders(self, workflow: str, key: str) -> list[str]:
        """The runs that hold a slot of the key."""

    def held_keys(self, workflow: str | None) -> list[tuple[str, str, list[str]]]:
        """(workflow, key, holders) of every slot document some run holds."""

    def holder_states(self, run_ids: list[str]) -> dict[str, tuple[RunState, Any]]:
        """The state and creation time of each of these runs that exists."""

    def next_queued(self, workflow: str, key: str, limit: int) -> list[str]:
        """The first ``limit`` queued runs of the key, in the order they start."""

    def queued_keys(self, workflow: str | None) -> list[tuple[str, str]]:
        """(workflow, key) of every key with a queued run."""

    def count_queued(self, workflow: str, key: str) -> int: ...


class SentEvents(Protocol):
    """Events kept for the event jobs that start waiting after they were sent
    (``runtime.documents.sent_events``)."""

    def keep(self, event: SentEvent) -> SentEvent:
        """Keep ``event``; the one kept before under the same id when there is one."""

    def kept(self, workflow: str, name: str, run_id: str, sent_since: datetime) -> list[SentEvent]:
        """The events of ``name`` kept for the run, sent since ``sent_since``, oldest first."""


class ItemStore(Protocol):
    """What the fan-out path reads and writes, each a point operation (``runtime.store.items``)."""

    @property
    def outputs(self) -> Outputs: ...

    def insert_items(self, run_id: str, job: str, items: Sequence[Any], *, workflow: str) -> None:
        """Store a fan-out's items (of a run of ``workflow``); those stored before (a repeated
        start) stay as they are."""

    def read_lane(self, run_id: str, job: str, lane: int) -> LaneView | None: ...

    def move_lane(
        self,
        run_id: str,
        job: str,
        lane: int,
        conditions: Mapping[str, Any],
        to: Lane,
        counts: Mapping[str, int],
    ) -> LaneView | None:
        """Put ``to`` in the lane and add ``counts`` (``done``, ``failed``, ``notStarted``) while
        ``conditions`` hold; the view after it, or None when they did not."""

    def failed_items(self, run_id: str, job: str, limit: int) -> list[FailedItem]:
        """The first ``limit`` items (by index) of the fan-out ``job`` whose last attempt failed."""

    def end_item(
        self,
        run_id: str,
        job: str,
        index: int,
        state: str,
        output: Any,
        output_ref: str | None,
        error: str | None,
    ) -> None:
        """Record an item's last report, unless it succeeded before."""

    def claim_next(
        self, run_id: str, job: str, after: int, concurrency: int, count: int
    ) -> ClaimedItem | None:
        """Of ``count`` items, the next item of the lane of ``after`` that has not succeeded,
        with its next attempt."""

    def claim_again(self, run_id: str, job: str, index: int, attempt: int) -> ClaimedItem | None:
        """Item ``index`` at ``attempt``, the one after the attempt whose failure it retries: the
        number depends on that report alone, so a duplicate handling of it claims the same one
        (the lane's guarded move hands it out once). Its document's ``attempt`` becomes at least
        ``attempt``, so a redrive goes on after it."""

    def read_item(self, run_id: str, job: str, index: int) -> Any: ...


class FunctionVersions(Protocol):
    """The published versions of job functions (``runtime.aws.lambda_versions``), for ``prune``."""

    def function_names(self, prefix: str) -> list[str]:
        """The functions whose name starts with ``prefix``."""

    def versions(self, function: str) -> list[int]:
        """The function's published version numbers (not ``$LATEST``)."""

    def delete_version(self, function: str, version: int) -> None: ...

    def delete_function(self, function: str) -> None:
        """The function with every version of it."""

    def layer_references(self, function: str) -> set[str]:
        """The layer version ARNs any version of the function (``$LATEST`` too) is configured with."""

    def layer_versions(self, layer: str) -> list[int]:
        """The layer's version numbers."""

    def delete_layer_version(self, layer: str, version: int) -> None: ...


@dataclass(frozen=True)
class Invocation:
    """What an existing Lambda function answered a synchronous invocation."""

    payload: bytes
    function_error: str | None
    """Lambda's ``FunctionError`` (``Unhandled``, ``Handled``): the payload is then the error."""
    request_id: str | None


class FunctionInvoker(Protocol):
    """Calls an existing Lambda function and waits for its answer (``runtime.aws.invoke``)."""

    def invoke(self, function: str, payload: bytes) -> Invocation:
        """Raises ``InvokeRefused`` (named by Lambda's error code) when Lambda did not run it."""


class InvokeRefused(Exception):
    """Lambda refused or failed the invocation before the function answered (throttled, not
    found, not permitted): ``code`` is Lambda's error code, which the attempt's error is named by."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class HttpResponse:
    """What an HTTP server answered: its status, its ``Content-Type`` and its body."""

    status: int
    content_type: str
    body: bytes


class HttpClient(Protocol):
    """Sends one HTTP request and answers the response, whatever its status (``runtime.aws.http``)."""

    def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, timeout: float
    ) -> HttpResponse:
        """Raises ``TimeoutError`` when no answer came within ``timeout`` seconds, ``OSError`` when
        the server could not be reached."""
