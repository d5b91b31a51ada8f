"""Operations and the reconciler under races and lost events, on a real MongoDB server: cancel
racing with successes and with a phase advance, redrive racing with a late duplicate of the old
failure, redrive twice, the reconciler racing with the orchestrator, and the reconciler finding a
lost success, a lost ``workflow_started``, a lost invocation and lost operations."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import partial
from typing import Any, cast

import pymongo
import pytest

from benchmarks.orchestration import race
from cdk_app.local.atlas_events import envelope
from runtime.clock import utcnow
from runtime.definition.model import HANDLERS_PHASE, Job, Phase, Workflow
from runtime.documents.events import JobEvent
from runtime.documents.run import Document, StatusEvent
from runtime.handlers.job import stub_handler
from runtime.ports import RunStore
from runtime.service.job_attempt import UserHandler, run_attempt
from runtime.service.operations import request_cancel, request_redrive
from runtime.service.orchestrator import Orchestrator
from runtime.service.reconciler import ASYNC_RETRY_WINDOW, Reconciler, ReconcileReport
from runtime.service.runs import initial_run, start_run
from runtime.statuses import ORCHESTRATOR_STATUSES, JobState, RunState, StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import workflow

pytestmark = pytest.mark.faults

LATER = timedelta(hours=1)
"""Far enough ahead that every run is stale and every unstarted attempt counts as lost."""


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


@dataclass(frozen=True)
class Dispatch:
    """A dispatch as seen at the moment it was sent: the run's and the job's state then."""

    job: str
    attempt: int
    run_state: str
    job_state: str
    job_attempt: int


class WatchingDispatcher:
    """Keeps the dispatched job events for the test to run, and notes the run document as it is
    at each dispatch, to check that nothing is claimed after a cancel."""

    def __init__(self, store: MongoStore) -> None:
        self.store = store
        self.pending: list[JobEvent] = []
        self.seen: list[Dispatch] = []
        self._lock = threading.Lock()

    def dispatch(self, event: JobEvent) -> None:
        document = self.store.load_run(event.run_id)
        assert document is not None
        job = document["jobs"][event.job]
        with self._lock:
            self.pending.append(event)
            self.seen.append(
                Dispatch(event.job, event.attempt, document["status"], job["state"], job["attempt"])
            )

    def drain(self) -> list[JobEvent]:
        with self._lock:
            events, self.pending = self.pending, []
        return events

    def claims(self) -> Counter[tuple[str, int]]:
        return Counter((d.job, d.attempt) for d in self.seen)


@dataclass
class Cloud:
    """The deployed system in one thread, step by step: statuses become trigger events for the
    orchestrator, dispatched attempts run through the job wrapper."""

    store: MongoStore
    definition: Workflow
    handlers: dict[str, UserHandler] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dispatcher = WatchingDispatcher(self.store)
        self.orchestrator = Orchestrator(store=self.store, dispatcher=self.dispatcher)
        self.delivered: set[Any] = set()
        self.executions: Counter[str] = Counter()

    def event(self, document: Document) -> dict[str, Any]:
        return envelope(document, self.store.settings.database, self.store.settings.statuses_collection)

    def undelivered(self, run_id: str) -> list[Document]:
        fresh = [
            s
            for s in self.store.run_statuses(run_id)
            if s["_id"] not in self.delivered and s["status"] in ORCHESTRATOR_STATUSES
        ]
        self.delivered.update(s["_id"] for s in fresh)
        return fresh

    def status(
        self, run_id: str, status: str, job: str | None = None, attempt: int | None = None
    ) -> Document:
        query: dict[str, Any] = {"runId": run_id, "status": status}
        query |= {} if job is None else {"job": job}
        query |= {} if attempt is None else {"attempt": attempt}
        document = self.store.statuses.find_one(query)
        assert document is not None, query
        return document

    def run(self, run_id: str) -> Document:
        document = self.store.load_run(run_id)
        assert document is not None
        return document

    def run_jobs(self) -> None:
        for job in self.dispatcher.drain():
            inner = self.handlers.get(job.job, stub_handler)

            def counted(event: dict[str, Any], context: Any, inner: UserHandler = inner) -> Any:
                self.executions[event["job"]] += 1
                return inner(event, context)

            run_attempt(self.store, counted, job.to_payload(), None, uuid.uuid4().hex)

    def deliver(self, run_id: str) -> None:
        for document in self.undelivered(run_id):
            self.orchestrator.handle(self.event(document))

    def settle(self, run_id: str, rounds: int = 200) -> Document:
        for _ in range(rounds):
            fresh = self.undelivered(run_id)
            jobs = self.dispatcher.drain()
            if not fresh and not jobs:
                break
            for document in fresh:
                self.orchestrator.handle(self.event(document))
            self.dispatcher.pending.extend(jobs)
            self.run_jobs()
        return self.run(run_id)


def failing_until(fixed: threading.Event) -> UserHandler:
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not fixed.is_set():
            raise RuntimeError(f"attempt {event['attempt']} fails on purpose")
        return {"attempt": event["attempt"]}

    return handler


def states(document: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    return {name: (job["state"], job["attempt"]) for name, job in document["jobs"].items()}


def nothing_claimed_after_the_cancel(cloud: Cloud, document: Mapping[str, Any]) -> None:
    """Every attempt sent while the run was already cancelled had been claimed before the cancel
    (the cancel marked it), no attempt is left dispatched, and each attempt was claimed once."""
    for seen in cloud.dispatcher.seen:
        if seen.run_state == RunState.CANCELLED:
            assert (seen.job_state, seen.job_attempt) == ("cancelled", seen.attempt), seen
    assert all(state != JobState.DISPATCHED for state, _ in states(document).values())
    assert set(cloud.dispatcher.claims().values()) <= {1}


# -- cancel ----------------------------------------------------------------------------------------

FAN = 12
FAN_OUT = workflow(
    "fan",
    {
        "p": {**{f"j{i}": {} for i in range(FAN)}, "join": {"after": [f"j{i}" for i in range(FAN)]}},
        "q": {"after_join": {}},
    },
)


@pytest.mark.parametrize("repeat", range(3))
def test_a_cancel_racing_with_successes_ends_the_run_and_nothing_is_dispatched_after_it(
    store: MongoStore, repeat: int
) -> None:
    cloud = Cloud(store, FAN_OUT)
    run_id = start_run(store, FAN_OUT, run_id=f"fan-{repeat}").run_id
    cloud.deliver(run_id)
    cloud.run_jobs()
    successes = cloud.undelivered(run_id)
    request_cancel(store, run_id, reason="stop")
    [cancel] = cloud.undelivered(run_id)

    events = [cloud.event(document) for document in [*successes, cancel]]
    assert race([partial(cloud.orchestrator.handle, event) for event in events]) == []
    document = cloud.settle(run_id)

    assert (document["status"], document["error"]) == ("cancelled", "cancelled: stop")
    nothing_claimed_after_the_cancel(cloud, document)
    assert states(document)["after_join"] == ("pending", 0)
    assert [s["status"] for s in store.run_statuses(run_id)].count("workflow_cancelled") == 1

    sent = len(cloud.dispatcher.seen)
    for document_ in store.run_statuses(run_id):
        if document_["status"] in ORCHESTRATOR_STATUSES:
            cloud.orchestrator.handle(cloud.event(document_))
    assert len(cloud.dispatcher.seen) == sent, "a redelivery after the cancel dispatches nothing"


TWO_STEP = workflow("two_step", {"p": {"a": {}}, "q": {"b": {}, "c": {}}})


@pytest.mark.parametrize("repeat", range(8))
def test_a_cancel_racing_with_a_phase_advance_leaves_nothing_running(store: MongoStore, repeat: int) -> None:
    cloud = Cloud(store, TWO_STEP)
    run_id = start_run(store, TWO_STEP, run_id=f"two-{repeat}").run_id
    cloud.deliver(run_id)
    cloud.run_jobs()
    [success] = cloud.undelivered(run_id)
    request_cancel(store, run_id)
    [cancel] = cloud.undelivered(run_id)

    handlers = [lambda: cloud.orchestrator.handle(cloud.event(success))] * 2 + [
        lambda: cloud.orchestrator.handle(cloud.event(cancel))
    ]
    assert race(handlers) == []
    document = cloud.settle(run_id)

    assert document["status"] == "cancelled"
    nothing_claimed_after_the_cancel(cloud, document)
    if states(document)["a"] == ("cancelled", 1):
        # The cancel won: a's success came after it and changed nothing.
        assert {states(document)[job] for job in ("b", "c")} == {("pending", 0)}
    else:
        assert states(document)["a"] == ("succeeded", 1)
        assert {states(document)[job] for job in ("b", "c")} <= {("pending", 0), ("cancelled", 1)}
    assert cloud.executions["b"] + cloud.executions["c"] <= 2


# -- redrive ---------------------------------------------------------------------------------------

FLAKY = workflow(
    "flaky",
    {"p": {"first": {}, "second": {"after": ["first"], "retries": 1}, "third": {"after": ["second"]}}},
)


def _failed_run(store: MongoStore, run_id: str) -> tuple[Cloud, threading.Event]:
    fixed = threading.Event()
    cloud = Cloud(store, FLAKY, handlers={"second": failing_until(fixed)})
    start_run(store, FLAKY, run_id=run_id)
    document = cloud.settle(run_id)
    assert document["status"] == "failed"
    assert states(document) == {
        "first": ("succeeded", 1),
        "second": ("failed", 2),
        "third": ("upstream_failed", 0),
    }
    return cloud, fixed


def test_a_redrive_racing_with_a_late_duplicate_of_the_old_failure_runs_the_failed_job_once_more(
    store: MongoStore,
) -> None:
    cloud, fixed = _failed_run(store, "flaky-1")
    fixed.set()
    old_failure = cloud.status("flaky-1", "failed", "second", 2)
    receipt = request_redrive(store, "flaky-1")
    [redrive] = cloud.undelivered("flaky-1")

    handlers = [lambda: cloud.orchestrator.handle(cloud.event(old_failure))] * 3 + [
        lambda: cloud.orchestrator.handle(cloud.event(redrive))
    ] * 2
    assert race(handlers) == []
    document = cloud.settle("flaky-1")

    assert receipt.sequence == 1
    assert document["status"] == "succeeded"
    assert document["redrives"] == 1
    assert states(document) == {
        "first": ("succeeded", 1),
        "second": ("succeeded", 3),
        "third": ("succeeded", 1),
    }
    assert cloud.executions == Counter({"first": 1, "second": 3, "third": 1})
    assert set(cloud.dispatcher.claims().values()) == {1}

    cloud.orchestrator.handle(cloud.event(old_failure))
    assert cloud.run("flaky-1")["status"] == "succeeded"


def test_a_run_can_be_redriven_twice_with_a_fresh_retry_budget_each_time(store: MongoStore) -> None:
    cloud, fixed = _failed_run(store, "flaky-2")

    request_redrive(store, "flaky-2")
    again = cloud.settle("flaky-2")
    assert again["status"] == "failed"
    assert states(again)["second"] == ("failed", 4), "two more attempts: 3 and 4"
    assert again["error"].startswith("job 'second' failed after 2 attempt(s)")

    fixed.set()
    second = request_redrive(store, "flaky-2")
    document = cloud.settle("flaky-2")

    assert second.sequence == 2
    assert (document["status"], document["redrives"], document["error"]) == ("succeeded", 2, None)
    assert states(document)["second"] == ("succeeded", 5)
    assert cloud.executions == Counter({"first": 1, "second": 5, "third": 1})
    run_statuses = [(s["status"], s["attempt"]) for s in store.run_statuses("flaky-2") if s["job"] is None]
    assert run_statuses == [
        ("workflow_started", 0),
        ("workflow_failed", 0),
        ("redrive_requested", 1),
        ("workflow_redriven", 1),
        ("workflow_failed", 1),
        ("redrive_requested", 2),
        ("workflow_redriven", 2),
        ("phase_completed", 2),
        ("workflow_succeeded", 2),
    ]


def test_a_cancelled_run_redriven_reruns_only_what_the_cancel_cut_short(store: MongoStore) -> None:
    cloud = Cloud(store, TWO_STEP)
    run_id = start_run(store, TWO_STEP).run_id
    cloud.settle(run_id)
    assert cloud.run(run_id)["status"] == "succeeded"

    other = start_run(store, TWO_STEP, run_id="two-cancelled").run_id
    cloud.deliver(other)
    cloud.run_jobs()
    cloud.deliver(other)  # a's success: b and c dispatched
    request_cancel(store, other)
    cloud.deliver(other)
    cloud.run_jobs()  # b and c run, but their reports change nothing
    cloud.deliver(other)
    assert states(cloud.run(other)) == {
        "a": ("succeeded", 1),
        "b": ("cancelled", 1),
        "c": ("cancelled", 1),
    }

    request_redrive(store, other)
    document = cloud.settle(other)

    assert document["status"] == "succeeded"
    assert states(document) == {"a": ("succeeded", 1), "b": ("succeeded", 2), "c": ("succeeded", 2)}


# -- the reconciler --------------------------------------------------------------------------------


def reconciler(cloud: Cloud, **options: Any) -> Reconciler:
    return Reconciler(cloud.store, cloud.dispatcher, stale_after=timedelta(minutes=5), **options)


LINE = workflow("line", {"p": {"a": {}, "b": {"after": ["a"]}}, "q": {"c": {}}})


def test_a_pass_applies_a_lost_success_and_the_run_completes(store: MongoStore) -> None:
    cloud = Cloud(store, LINE)
    run_id = start_run(store, LINE).run_id
    cloud.deliver(run_id)
    cloud.run_jobs()
    cloud.undelivered(run_id)  # a's success is lost on the way

    report = reconciler(cloud).reconcile_pass(utcnow() + LATER)

    assert (report.runs_checked, report.statuses_applied, report.redispatched) == (1, 1, 0)
    assert report.repaired_runs == (run_id,)
    assert [event.job for event in cloud.dispatcher.pending] == ["b"]
    assert cloud.settle(run_id)["status"] == "succeeded"


def test_a_pass_leaves_runs_alone_that_are_not_stale_or_need_nothing(store: MongoStore) -> None:
    cloud = Cloud(store, LINE)
    run_id = start_run(store, LINE).run_id
    cloud.undelivered(run_id)

    assert reconciler(cloud).reconcile_pass().runs_checked == 0, "written a moment ago"
    cloud.settle(start_run(store, LINE).run_id)
    report = reconciler(cloud).reconcile_pass(utcnow() + LATER)
    assert (report.runs_checked, report.repaired_runs) == (1, (run_id,)), "only the running one"
    cloud.settle(run_id)
    assert reconciler(cloud).reconcile_pass(utcnow() + LATER) == ReconcileReport(), "nothing left"


def test_a_pass_starts_a_run_whose_workflow_started_was_lost_or_never_recorded(store: MongoStore) -> None:
    cloud = Cloud(store, LINE)
    lost = start_run(store, LINE, run_id="lost-start").run_id
    cloud.undelivered(lost)
    store.insert_run(initial_run(LINE, "never-started", {}))  # the starter died between its writes

    report = reconciler(cloud).reconcile_pass(utcnow() + LATER)

    assert sorted(report.repaired_runs) == ["lost-start", "never-started"]
    assert report.started_recorded == 1
    assert sorted((e.run_id, e.job, e.attempt) for e in cloud.dispatcher.pending) == [
        ("lost-start", "a", 1),
        ("never-started", "a", 1),
    ]
    assert cloud.settle("lost-start")["status"] == "succeeded"
    assert cloud.settle("never-started")["status"] == "succeeded"


def test_a_pass_dispatches_again_an_attempt_whose_invocation_was_lost(store: MongoStore) -> None:
    cloud = Cloud(store, LINE)
    run_id = start_run(store, LINE).run_id
    cloud.deliver(run_id)
    [lost] = cloud.dispatcher.drain()  # Lambda never ran it
    timeout = timedelta(seconds=LINE.job("a").timeout)

    early = reconciler(cloud).reconcile_pass(utcnow() + timeout)
    assert (early.runs_checked, early.redispatched) == (0, 0), "not stale yet: the pass waits"
    early = reconciler(cloud).reconcile_run(run_id, utcnow() + timedelta(minutes=1))
    assert early.redispatched == 0, "within the job's timeout plus Lambda's retry window"

    now = utcnow() + timeout + ASYNC_RETRY_WINDOW + timedelta(seconds=1)
    report = reconciler(cloud).reconcile_run(run_id, now)

    assert report.redispatched == 1
    assert [(e.job, e.attempt) for e in cloud.dispatcher.pending] == [(lost.job, lost.attempt)]
    assert reconciler(cloud).reconcile_run(run_id, now + timedelta(seconds=1)).redispatched == 0, (
        "the redispatch is claimed: the next pass waits as long again"
    )
    document = cloud.settle(run_id)
    assert document["status"] == "succeeded"
    assert cloud.executions["a"] == 1


FANNED = workflow("fanned", {"p": {"each": {"for_each": "input.items", "max_concurrency": 2}}})


def test_a_pass_dispatches_again_an_item_whose_invocation_was_lost(store: MongoStore) -> None:
    # GIVEN a fan-out whose lanes were moved but whose item invocations never reached Lambda
    cloud = Cloud(store, FANNED)
    run_id = start_run(store, FANNED, input={"items": ["a", "b", "c"]}).run_id
    cloud.deliver(run_id)
    lost = cloud.dispatcher.drain()
    assert sorted((event.index, event.attempt) for event in lost) == [(0, 1), (1, 1)]

    # WHEN a reconciler pass runs once the items' timeout and Lambda's retry window have passed
    early = reconciler(cloud).reconcile_run(run_id, utcnow() + timedelta(minutes=1))
    now = utcnow() + timedelta(seconds=FANNED.job("each").timeout) + ASYNC_RETRY_WINDOW + timedelta(seconds=1)
    report = reconciler(cloud).reconcile_run(run_id, now)

    # THEN each lost item is dispatched again at its attempt, once, and the run completes
    assert early.redispatched == 0, "within the job's timeout plus Lambda's retry window"
    assert report.redispatched == 2
    assert sorted((event.index, event.attempt, event.item) for event in cloud.dispatcher.pending) == [
        (0, 1, "a"),
        (1, 1, "b"),
    ]
    assert reconciler(cloud).reconcile_run(run_id, now + timedelta(seconds=1)).redispatched == 0, (
        "the redispatch is claimed: the next pass waits as long again"
    )
    assert cloud.settle(run_id)["status"] == "succeeded"
    assert cloud.executions["each"] == 3


def test_an_attempt_that_reported_started_is_not_dispatched_again(store: MongoStore) -> None:
    cloud = Cloud(store, LINE, handlers={"a": lambda event, context: (_ for _ in ()).throw(SystemExit)})
    run_id = start_run(store, LINE).run_id
    cloud.deliver(run_id)
    with pytest.raises(SystemExit):
        cloud.run_jobs()  # started is recorded, then the function dies: Lambda's on-failure reports it

    assert reconciler(cloud).reconcile_run(run_id, utcnow() + LATER).redispatched == 0


def test_a_pass_racing_with_the_orchestrator_dispatches_each_attempt_once_and_loses_nothing(
    store: MongoStore,
) -> None:
    cloud = Cloud(store, FAN_OUT)
    run_id = start_run(store, FAN_OUT, run_id="fan-race").run_id
    cloud.deliver(run_id)
    cloud.run_jobs()
    successes = cloud.undelivered(run_id)
    sweeper = Reconciler(store, cloud.dispatcher, stale_after=timedelta(0))

    handlers: list[Callable[[], object]] = [
        partial(cloud.orchestrator.handle, cloud.event(document)) for document in successes
    ]
    handlers += [sweeper.reconcile_pass, lambda: sweeper.reconcile_run(run_id)]
    assert race(handlers) == []
    document = cloud.settle(run_id)

    assert document["status"] == "succeeded"
    assert cloud.dispatcher.claims() == Counter({(job.name, 1): 1 for job in FAN_OUT.jobs()})
    assert cloud.executions == Counter({job.name: 1 for job in FAN_OUT.jobs()})


def test_a_pass_applies_a_lost_cancel_even_while_the_run_keeps_progressing(store: MongoStore) -> None:
    cloud = Cloud(store, LINE)
    run_id = start_run(store, LINE).run_id
    cloud.deliver(run_id)
    request_cancel(store, run_id, reason="lost on the way")
    cloud.undelivered(run_id)  # the cancel is lost

    report = Reconciler(store, cloud.dispatcher, stale_after=timedelta(0)).reconcile_pass()

    assert report.statuses_applied == 1
    assert cloud.run(run_id)["status"] == "cancelled"


def test_a_pass_applies_a_lost_redrive(store: MongoStore) -> None:
    cloud, fixed = _failed_run(store, "flaky-lost")
    fixed.set()
    request_redrive(store, "flaky-lost")
    cloud.undelivered("flaky-lost")  # the redrive is lost

    report = reconciler(cloud).reconcile_pass(utcnow() + LATER)

    assert report.repaired_runs == ("flaky-lost",)
    assert cloud.settle("flaky-lost")["status"] == "succeeded"


def test_a_workflows_reconciler_only_touches_its_own_runs(store: MongoStore) -> None:
    cloud = Cloud(store, LINE)
    mine = start_run(store, LINE).run_id
    theirs = start_run(store, TWO_STEP).run_id
    cloud.undelivered(mine)
    cloud.undelivered(theirs)

    report = reconciler(cloud, workflow="line").reconcile_pass(utcnow() + LATER)

    assert report.repaired_runs == (mine,)


# -- retention -------------------------------------------------------------------------------------


def test_an_ended_run_under_retention_expires_with_every_status_and_a_redrive_keeps_them_again(
    store: MongoStore,
) -> None:
    definition = replace(FLAKY, retention_days=7)
    fixed = threading.Event()
    cloud = Cloud(store, definition, handlers={"second": failing_until(fixed)})
    run_id = start_run(store, definition).run_id
    document = cloud.settle(run_id)
    assert document["status"] == "failed"

    expire_at = document["expireAt"]
    assert timedelta(days=7) - (expire_at - document["updatedAt"]) < timedelta(seconds=5)
    assert {s.get("expireAt") for s in store.run_statuses(run_id)} == {expire_at}
    late = cloud.status(run_id, "failed", "second", 2)
    store.statuses.delete_one({"_id": late["_id"]})
    store.insert_status({key: value for key, value in late.items() if key not in ("_id", "expireAt")})
    cloud.deliver(run_id)
    assert {s.get("expireAt") for s in store.run_statuses(run_id)} == {expire_at}, "a late report expires too"

    fixed.set()
    request_redrive(store, run_id)
    cloud.deliver(run_id)
    reopened = cloud.run(run_id)
    assert (reopened["status"], reopened["expireAt"]) == ("running", None)
    assert all("expireAt" not in s for s in store.run_statuses(run_id))
    assert cloud.settle(run_id)["status"] == "succeeded"
    assert len({s.get("expireAt") for s in store.run_statuses(run_id)} - {None}) == 1


class Interleaved:
    """A store through which a handling makes its first ``write`` (a method of the store) only
    after ``interleave`` ran: another handler's whole work, forced between this handling's read
    and its write."""

    def __init__(self, store: MongoStore, write: str, interleave: Callable[[], object]) -> None:
        self._store = store
        self._write = write
        self._interleave: Callable[[], object] | None = interleave

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if name != self._write:
            return method

        def interleaved(*args: Any, **kwargs: Any) -> Any:
            if self._interleave is not None:
                interleave, self._interleave = self._interleave, None
                interleave()
            return method(*args, **kwargs)

        return interleaved


def test_a_late_report_handled_across_a_redrive_does_not_stamp_the_old_expiry_on_the_reopened_run(
    store: MongoStore,
) -> None:
    # GIVEN a failed run kept for 7 days, whose statuses carry its expiry
    definition = replace(FLAKY, retention_days=7)
    cloud = Cloud(store, definition, handlers={"second": failing_until(threading.Event())})
    run_id = start_run(store, definition, run_id="kept-1").run_id
    assert cloud.settle(run_id)["status"] == "failed"
    late = cloud.status(run_id, "failed", "second", 2)
    request_redrive(store, run_id)
    [redrive] = cloud.undelivered(run_id)

    # WHEN a late duplicate of the old failure is handled on the run as it was read before the
    # redrive, and the redrive is applied whole between that read and the handling's stamp
    apply_the_redrive = partial(cloud.orchestrator.handle, cloud.event(redrive))
    racing = Orchestrator(
        store=cast(RunStore, Interleaved(store, "expire_statuses", apply_the_redrive)),
        dispatcher=cloud.dispatcher,
    )
    racing.handle(cloud.event(late))

    # THEN the reopened run keeps its statuses: none carries the old expiry
    assert (cloud.run(run_id)["status"], cloud.run(run_id)["expireAt"]) == ("running", None)
    assert [s["status"] for s in store.run_statuses(run_id) if "expireAt" in s] == []


SIBLINGS = workflow(
    "siblings",
    {"p": {"a": {"retries": 0}, "b": {}, "each": {"for_each": "input.items"}}, "q": {"c": {}}},
)


@pytest.mark.parametrize("lost", [False, True], ids=["delivered", "not_run-lost-then-reconciled"])
def test_a_redrive_gives_a_new_attempt_to_a_job_and_an_item_the_wrapper_recorded_not_run(
    store: MongoStore, lost: bool
) -> None:
    # GIVEN a fails for good while b and an item of each are still on their way to Lambda
    fixed = threading.Event()
    cloud = Cloud(store, SIBLINGS, handlers={"a": failing_until(fixed)})
    run_id = start_run(store, SIBLINGS, input={"items": [1]}).run_id
    cloud.deliver(run_id)
    dispatched = cloud.dispatcher.drain()
    late = [job for job in dispatched if job.job != "a"]
    cloud.dispatcher.pending.extend(job for job in dispatched if job.job == "a")
    cloud.run_jobs()
    cloud.deliver(run_id)
    assert cloud.run(run_id)["status"] == "failed"
    # WHEN their invocations reach the job wrapper after the run failed: recorded not_run
    cloud.dispatcher.pending.extend(late)
    cloud.run_jobs()
    refused = [s for s in store.run_statuses(run_id) if s["status"] == "not_run"]
    assert sorted((s["job"], s.get("index")) for s in refused) == [("b", None), ("each", 0)]
    if lost:
        cloud.undelivered(run_id)  # the trigger never delivers them
    else:
        cloud.deliver(run_id)
    # THEN a redrive runs them again (once their not_run is applied: by the reconciler, if it was
    # lost), and the run completes
    fixed.set()
    request_redrive(store, run_id)
    document = cloud.settle(run_id)
    if lost:
        assert document["status"] == "running"
        report = reconciler(cloud).reconcile_pass(utcnow() + LATER)
        assert report.statuses_applied == 2
        document = cloud.settle(run_id)
    assert document["status"] == "succeeded", states(document)
    assert cloud.executions == Counter({"a": 2, "b": 1, "each": 1, "c": 1})


HANDLED = workflow("handled", {"p": {"x": {"retries": 0}, "y": {"retries": 2}}}, on_failure=None)


def test_a_retry_decided_as_the_failure_handlers_start_is_not_dispatched(store: MongoStore) -> None:
    # GIVEN x and y in flight in a run with a failure handler
    definition = replace(
        HANDLED, on_failure=Phase(name=HANDLERS_PHASE, jobs=(Job(name="release", phase=HANDLERS_PHASE),))
    )
    cloud = Cloud(store, definition)
    run_id = start_run(store, definition, run_id="handled-1").run_id
    cloud.deliver(run_id)
    cloud.dispatcher.drain()
    y_failed = StatusEvent(
        run_id=run_id, workflow="handled", status=StatusName.FAILED, phase="p", job="y", attempt=1, error="e"
    )
    x_failed = replace(y_failed, job="x")
    store.record_status(x_failed)
    store.record_status(y_failed)
    # WHEN y's retry is decided, and x's last failure starts the handlers before that decision is
    # written
    racing = Orchestrator(
        store=cast(
            RunStore, Interleaved(store, "apply_transition", partial(cloud.orchestrator.apply, x_failed))
        ),
        dispatcher=cloud.dispatcher,
    )
    racing.apply(y_failed)
    # THEN y gets no other attempt: the handlers run, and only they are dispatched
    assert sorted((job.job, job.attempt) for job in cloud.dispatcher.drain()) == [("release", 1)]
    run = store.read_run(run_id)
    assert run is not None
    assert run.failure is not None
    assert (run.jobs["y"].state, run.jobs["y"].attempt) == (JobState.FAILED, 1)
