"""``for_each`` jobs under what the cloud does to events, on a real MongoDB server: items
completing in bursts of 200 at once, every report delivered twice, handlings crashing before and
after each write and delivered again; nothing is lost, the job completes once, and no more items
are in flight than ``max_concurrency`` allows, counted from the dispatches themselves."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pymongo
import pytest

from benchmarks.orchestration import race
from cdk_app.local.atlas_events import envelope
from cdk_app.local.faults import CrashAtStep, CrashingDispatcher, CrashingStore, InjectedCrash, RandomCrash
from runtime.clock import utcnow
from runtime.definition.loader import workflow_from_document
from runtime.definition.model import RetryPolicy
from runtime.documents.events import JobEvent
from runtime.service.fan_out import FanOutContexts
from runtime.service.orchestrator import Orchestrator
from runtime.service.runs import start_run
from runtime.service.timers import fire_due_timers
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import Driver, Faults, workflow

pytestmark = pytest.mark.faults

BURST = 200


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


class InFlight:
    """A dispatcher that counts the items in flight at every dispatch: dispatched (a duplicate
    of the same attempt is the same invocation) and not yet reported."""

    def __init__(self) -> None:
        self.pending: list[JobEvent] = []
        self.history: list[JobEvent] = []
        self.in_flight: set[int] = set()
        self.most = 0
        self._lock = threading.Lock()

    def dispatch(self, event: JobEvent) -> None:
        with self._lock:
            self.history.append(event)
            self.pending.append(event)
            if event.index is not None:
                self.in_flight.add(event.index)
                self.most = max(self.most, len(self.in_flight))

    def reported(self, index: int) -> None:
        with self._lock:
            self.in_flight.discard(index)

    def drain(self) -> list[JobEvent]:
        with self._lock:
            events, self.pending = self.pending, []
        return events


WARM = FanOutContexts()
"""Warm Lambda containers: what the items of a fan-out share is read once per process."""


def _deliver(
    store: MongoStore, dispatcher: InFlight, document: dict[str, Any], crash: float, seed: int
) -> None:
    """One delivery to an orchestrator of its own (its own Lambda), which may crash at any write
    and is then delivered again, as Lambda retries it."""
    settings = store.settings
    event = envelope(document, settings.database, settings.statuses_collection)
    plan = RandomCrash(random.Random(seed), crash)
    orchestrator = Orchestrator(
        CrashingStore(store, plan),
        CrashingDispatcher(dispatcher, plan),
        redispatch_after=timedelta(0),
        contexts=WARM,
    )
    try:
        orchestrator.handle(event)
    except InjectedCrash:
        Orchestrator(store, dispatcher, redispatch_after=timedelta(0), contexts=WARM).handle(event)


def _fan_out_run(store: MongoStore, items: int, concurrency: int, dispatcher: InFlight) -> str:
    spec = workflow(
        "burst",
        {
            "p": {
                "fan": {"for_each": "input.items", "max_concurrency": concurrency, "retries": 0},
                "total": {"after": ["fan"]},
            }
        },
    )
    run_id = start_run(store, spec, input={"items": list(range(items))}).run_id
    started = store.find_status(run_id, None, None, "workflow_started", 0)
    assert started is not None
    _deliver(store, dispatcher, started, 0.0, 0)
    return run_id


def _complete_in_bursts(
    store: MongoStore, run_id: str, dispatcher: InFlight, duplicates: int, crash: float
) -> int:
    """Report every dispatched item's success, all of a round at once, each report delivered
    ``duplicates`` times by racing handlers; the number of rounds."""
    rounds = 0
    seed = 0
    while batch := [event for event in dispatcher.drain() if event.index is not None]:
        rounds += 1
        handlers: list[Callable[[], object]] = []
        for event in {(e.index, e.attempt): e for e in batch}.values():
            assert event.index is not None
            document = {
                "runId": run_id,
                "workflow": "burst",
                "phase": "p",
                "job": "fan",
                "index": event.index,
                "status": "success",
                "attempt": event.attempt,
                "output": {"n": event.item},
            }
            store.insert_status(document)
            dispatcher.reported(event.index)
            for _ in range(duplicates):
                seed += 1
                handlers.append(partial(_deliver, store, dispatcher, document, crash, seed))
        errors = race(handlers)
        assert not errors, errors
    return rounds


def _job_ends(store: MongoStore, run_id: str) -> list[dict[str, Any]]:
    return [
        status
        for status in store.run_statuses(run_id)
        if status["job"] == "fan"
        and status.get("index") is None
        and status["status"] in ("success", "failed")
    ]


def test_bursts_of_200_completions_with_duplicates_and_crashes_lose_nothing_and_end_the_job_once(
    store: MongoStore,
) -> None:
    dispatcher = InFlight()
    run_id = _fan_out_run(store, items=2 * BURST, concurrency=BURST, dispatcher=dispatcher)

    rounds = _complete_in_bursts(store, run_id, dispatcher, duplicates=2, crash=0.2)

    run = store.load_run(run_id)
    assert run is not None
    fan_out = run["jobs"]["fan"]["fanOut"]
    assert (fan_out["done"], fan_out["failed"]) == (2 * BURST, 0), "every success counted once"
    assert rounds == 2
    ends = _job_ends(store, run_id)
    assert [end["status"] for end in ends] == ["success"], "the job ends once"
    assert dispatcher.most <= BURST
    items = store.items().items
    assert items.count_documents({"runId": run_id, "state": "succeeded"}) == 2 * BURST
    # The job's end travels like any report: the job after it starts, once.
    _deliver(store, dispatcher, ends[0], 0.0, 0)
    _deliver(store, dispatcher, ends[0], 0.0, 1)
    assert {(event.job, event.attempt) for event in dispatcher.drain()} == {("total", 1)}


@pytest.mark.parametrize("concurrency", [1, 7, 50])
def test_max_concurrency_is_never_exceeded_under_duplicates(store: MongoStore, concurrency: int) -> None:
    dispatcher = InFlight()
    run_id = _fan_out_run(store, items=120, concurrency=concurrency, dispatcher=dispatcher)

    _complete_in_bursts(store, run_id, dispatcher, duplicates=3, crash=0.0)

    assert dispatcher.most == concurrency, "as many in flight as allowed, never more"
    dispatched = {(event.index, event.attempt) for event in dispatcher.history if event.index is not None}
    assert sorted(index for index, _ in dispatched) == list(range(120)), "each item dispatched at one attempt"
    assert len(_job_ends(store, run_id)) == 1


def _tolerating(tolerated: int | str, failing: set[int], items: int = 10) -> Any:
    spec = workflow(
        "tolerant",
        {
            "p": {
                "fan": {
                    "for_each": "input.items",
                    "max_concurrency": 4,
                    "retries": 1,
                    "tolerated_failures": tolerated,
                },
                "total": {"after": ["fan"]},
            }
        },
    )

    def fan(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["index"] in failing:
            raise RuntimeError(f"item {event['index']} breaks")
        return {"n": event["item"]}

    seen: dict[str, Any] = {}

    def total(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.update(event["results"])
        return {}

    return spec, {"fan": fan, "total": total}, seen


@pytest.mark.parametrize("tolerated", [2, "20%"])
def test_exactly_as_many_failed_items_as_tolerated_lets_the_job_succeed(
    store: MongoStore, tolerated: Any
) -> None:
    spec, handlers, seen = _tolerating(tolerated, failing={3, 8})

    outcome = Driver(store, spec, handlers=handlers, faults=Faults(duplicate=2)).run(
        run_input={"items": list(range(10))}
    )

    assert outcome.run["status"] == "succeeded"
    assert outcome.run["jobs"]["fan"]["fanOut"]["failed"] == 2
    expected = [None if index in (3, 8) else {"n": index} for index in range(10)]
    assert seen["fan"] == expected, "index order, null for a failed item"
    assert outcome.executions["fan"] == 10 + 2, "each failed item was retried once"


@pytest.mark.parametrize("tolerated", [2, "29%"])
def test_one_failed_item_more_than_tolerated_fails_the_job_and_the_run(
    store: MongoStore, tolerated: Any
) -> None:
    spec, handlers, seen = _tolerating(tolerated, failing={1, 5, 9})

    outcome = Driver(store, spec, handlers=handlers, faults=Faults(duplicate=2)).run(
        run_input={"items": list(range(10))}
    )

    assert outcome.run["status"] == "failed"
    assert outcome.run["jobs"]["fan"]["state"] == "failed"
    assert "3 of 10 items of 'fan' failed, more than the 2 it tolerates" in outcome.run["error"]
    assert "RuntimeError: item" in outcome.run["error"]
    assert seen == {}, "the job after it never ran"
    assert outcome.count("workflow_failed") == 1


CRASHING = workflow(
    "crashing",
    {
        "p": {
            "make": {},
            "fan": {"after": ["make"], "for_each": "results.make.items", "max_concurrency": 3, "retries": 1},
            "total": {"after": ["fan"]},
        }
    },
)


def _make(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"items": [f"item-{index}" for index in range(8)]}


def _fails_once(index: int) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """An item handler whose first execution for item ``index`` fails (attempt numbers of an item
    may skip one after a crash, so it counts executions, not numbers)."""
    failed: set[int] = set()

    def fan(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["index"] == index and index not in failed:
            failed.add(index)
            raise RuntimeError(f"the first attempt of item {index} fails")
        return {"item": event["item"], "index": event["index"]}

    return fan


def _total(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"seen": [output["index"] for output in event["results"]["fan"]]}


@pytest.mark.parametrize("step", range(1, 11))
def test_a_crash_at_any_write_of_a_fan_out_then_redelivery_changes_nothing(
    store: MongoStore, step: int
) -> None:
    baseline = Driver(store, CRASHING, handlers={"make": _make, "fan": _fails_once(5), "total": _total}).run()

    handlers = {"make": _make, "fan": _fails_once(5), "total": _total}
    outcome = Driver(
        store, CRASHING, handlers=handlers, faults=Faults(crash_plan=lambda: CrashAtStep(step))
    ).run()

    assert outcome.crashes > 0
    assert outcome.run["status"] == baseline.run["status"] == "succeeded"
    assert outcome.run["jobs"]["total"]["output"] == {"seen": list(range(8))}
    assert outcome.run["jobs"]["fan"]["fanOut"]["done"] == 8
    assert outcome.executions == baseline.executions, "every item attempt ran once"
    assert outcome.count("success", "fan") == 8 + 1, "eight items and the job, once each"


def test_the_items_of_a_fan_out_share_one_read_of_the_run_per_process(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    contexts = FanOutContexts()
    dispatcher = InFlight()
    run_id = _fan_out_run(store, items=5, concurrency=5, dispatcher=dispatcher)
    reads: list[str] = []
    original = store.read_run

    def counting_read(run: str) -> Any:
        reads.append(run)
        return original(run)

    monkeypatch.setattr(store, "read_run", counting_read)
    settings = store.settings
    for event in dispatcher.drain():
        document: dict[str, Any] = {
            "runId": run_id,
            "workflow": "burst",
            "phase": "p",
            "job": "fan",
            "index": event.index,
            "status": "success",
            "attempt": event.attempt,
            "output": {},
        }
        store.insert_status(document)
        Orchestrator(store, dispatcher, contexts=contexts).handle(
            envelope(document, settings.database, settings.statuses_collection)
        )
    assert reads == [run_id], "the first item's report read the run once; the others read their lane only"


def test_the_reconciler_applies_the_item_reports_whose_events_were_lost(store: MongoStore) -> None:
    from runtime.service.job_attempt import run_attempt
    from runtime.service.reconciler import Reconciler
    from tests.engine_harness import RecordingDispatcher

    spec = workflow("lost", {"p": {"fan": {"for_each": "input.items", "max_concurrency": 2, "retries": 1}}})
    run_id = start_run(store, spec, input={"items": ["a", "b", "c"]}).run_id
    dispatcher = RecordingDispatcher()
    reconciler = Reconciler(store, dispatcher, stale_after=timedelta(0))
    failed_once: set[int] = set()

    def fan(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["index"] == 1 and 1 not in failed_once:
            failed_once.add(1)
            raise RuntimeError("the first attempt of item 1 fails")
        return {"item": event["item"]}

    # No event reaches the orchestrator (a suspended trigger): only the reconciler applies them.
    for _ in range(10):
        reconciler.reconcile_run(run_id)
        for event in dispatcher.drain():
            run_attempt(store, fan, event.to_payload(), None, f"request-{event.index}-{event.attempt}")
    run = store.load_run(run_id)

    assert run is not None
    assert run["status"] == "succeeded"
    assert run["jobs"]["fan"]["fanOut"]["done"] == 3
    item = store.items().items.find_one({"runId": run_id, "index": 1})
    assert item is not None
    assert item["state"] == "succeeded"


def test_a_late_duplicate_of_an_item_report_dispatches_nothing_once_its_job_has_failed(
    store: MongoStore,
) -> None:
    from tests.engine_harness import RecordingDispatcher

    spec = workflow("late", {"p": {"fan": {"for_each": "input.items", "max_concurrency": 1, "retries": 0}}})
    run_id = start_run(store, spec, input={"items": ["a", "b"]}).run_id
    dispatcher = RecordingDispatcher()
    settings = store.settings

    def deliver(document: dict[str, Any]) -> None:
        event = envelope(document, settings.database, settings.statuses_collection)
        Orchestrator(store, dispatcher, redispatch_after=timedelta(0)).handle(event)

    started = store.find_status(run_id, None, None, "workflow_started", 0)
    assert started is not None
    deliver(started)
    first = dispatcher.drain()
    assert [event.index for event in first] == [0]
    failure: dict[str, Any] = {
        "_id": f"{run_id}/fan[0]/{first[0].attempt}/end",
        "runId": run_id,
        "workflow": "late",
        "phase": "p",
        "job": "fan",
        "index": 0,
        "status": "failed",
        "attempt": first[0].attempt,
        "error": "boom",
    }
    store.insert_status(failure)
    deliver(failure)  # the item fails for good, and the job with it: item 1 is not started
    assert dispatcher.drain() == []
    job_failed = store.find_status(run_id, "p", "fan", "failed", 1)
    assert job_failed is not None
    deliver(job_failed)
    run = store.load_run(run_id)
    assert run is not None
    assert run["status"] == "failed"

    deliver(failure)

    assert dispatcher.drain() == [], "nothing is dispatched for a job that failed"


# -- retries, failures and the failure handlers --------------------------------------------------


class Steps:
    """Item reports delivered one at a time to the real orchestrator; ``meanwhile`` runs once,
    inside the next handling that moves a lane, just before its move (after it read the lane
    and claimed what the move hands out): the interleaving of two racing handlers, forced."""

    def __init__(self, store: MongoStore, spec: Any, run_input: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        from runtime.store.items import MongoItems
        from tests.engine_harness import RecordingDispatcher

        self.store = store
        self.spec = spec
        self.dispatcher = RecordingDispatcher()
        self.meanwhile: list[Callable[[], object]] = []
        self.run_id = start_run(store, spec, input=run_input).run_id
        original = MongoItems.move_lane

        def move_lane(items: MongoItems, *args: Any, **kwargs: Any) -> Any:
            while self.meanwhile:
                self.meanwhile.pop()()
            return original(items, *args, **kwargs)

        monkeypatch.setattr(MongoItems, "move_lane", move_lane)
        started = store.find_status(self.run_id, None, None, "workflow_started", 0)
        assert started is not None
        self.deliver(started)

    def deliver(self, document: dict[str, Any]) -> None:
        settings = self.store.settings
        event = envelope(document, settings.database, settings.statuses_collection)
        Orchestrator(self.store, self.dispatcher, redispatch_after=timedelta(0)).handle(event)

    def report(self, event: JobEvent, status: str, **fields: Any) -> dict[str, Any]:
        """Record the report of ``event`` (an item's or a job's attempt); its document."""
        index = "" if event.index is None else f"[{event.index}]"
        document: dict[str, Any] = {
            "_id": f"{self.run_id}/{event.job}{index}/{event.attempt}/end",
            "runId": self.run_id,
            "workflow": self.spec.name,
            "phase": event.phase,
            "job": event.job,
            "index": event.index,
            "status": status,
            "attempt": event.attempt,
            **fields,
        }
        self.store.insert_status(document)
        return document

    def job_end(self, job: str, status: str) -> dict[str, Any] | None:
        ends = [
            s
            for s in self.store.run_statuses(self.run_id)
            if s["job"] == job and s.get("index") is None and s["status"] == status
        ]
        return ends[0] if ends else None

    def fan_out(self) -> dict[str, Any]:
        run = self.store.load_run(self.run_id)
        assert run is not None
        return dict(run["jobs"]["fan"]["fanOut"])


def test_a_duplicate_handled_alongside_a_failed_items_report_uses_up_none_of_its_retries(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = workflow("budget", {"p": {"fan": {"for_each": "input.items", "max_concurrency": 1, "retries": 3}}})
    steps = Steps(store, spec, {"items": ["a"]}, monkeypatch)
    attempts: list[int] = []

    while events := steps.dispatcher.drain():
        (event,) = events
        attempts.append(event.attempt)
        failure = steps.report(event, "failed", error="RuntimeError: the item always fails")
        # Its duplicate is handled whole while the first handling is between its claim and its move.
        steps.meanwhile.append(partial(steps.deliver, failure))
        steps.deliver(failure)

    assert attempts == [1, 2, 3, 4], "1 + retries executions, at consecutive attempt numbers"
    assert steps.job_end("fan", "failed") is not None
    assert steps.fan_out()["failed"] == 1


def test_the_report_that_fails_the_job_starts_no_item_in_its_lane_or_any_other(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = workflow(
        "crossing",
        {
            "p": {
                "fan": {
                    "for_each": "input.items",
                    "max_concurrency": 2,
                    "retries": 0,
                    "tolerated_failures": 1,
                }
            }
        },
    )
    steps = Steps(store, spec, {"items": list(range(6))}, monkeypatch)
    first, second = steps.dispatcher.drain()
    steps.deliver(steps.report(first, "failed", error="RuntimeError: item 0"))  # tolerated
    (third,) = steps.dispatcher.drain()
    assert third.index == 2

    # Item 1's success read its lane (one failure, tolerated) and claimed item 3; before its move,
    # item 2's failure, the one past what the job tolerates, is handled.
    crossing = steps.report(third, "failed", error="RuntimeError: item 2")
    steps.meanwhile.append(partial(steps.deliver, crossing))
    steps.deliver(steps.report(second, "success", output={}))

    assert steps.dispatcher.drain() == [], "neither lane starts an item once the job has failed"
    end = steps.job_end("fan", "failed")
    assert end is not None
    assert "2 of 6 items of 'fan' failed, more than the 1 it tolerates" in end["error"]
    fan_out = steps.fan_out()
    assert (fan_out["done"], fan_out["failed"], fan_out["notStarted"]) == (1, 2, 3)
    assert [lane["index"] for lane in fan_out["lanes"].values()] == [None, None]


def test_the_report_past_the_tolerated_failures_starts_no_next_item(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = workflow("past", {"p": {"fan": {"for_each": "input.items", "max_concurrency": 1, "retries": 0}}})
    steps = Steps(store, spec, {"items": ["a", "b", "c"]}, monkeypatch)
    (first,) = steps.dispatcher.drain()

    steps.deliver(steps.report(first, "failed", error="RuntimeError: boom"))

    assert steps.dispatcher.drain() == [], "the lane's next item is not started"
    end = steps.job_end("fan", "failed")
    assert end is not None
    assert (
        "1 of 3 items of 'fan' failed, more than the 0 it tolerates; the last: RuntimeError: boom"
        in end["error"]
    )
    assert (steps.fan_out()["failed"], steps.fan_out()["notStarted"]) == (1, 2)


HANDLED = workflow_from_document(
    {
        "workflow": "handled",
        "phases": {
            "p": {
                "jobs": {
                    "breaks": {"retries": 0},
                    "fan": {"for_each": "input.items", "max_concurrency": 2, "retries": 2},
                }
            }
        },
        "on_failure": {"release": {}},
    }
)


@pytest.mark.parametrize("status", ["success", "failed"])
def test_while_the_failure_handlers_run_a_fan_out_starts_and_retries_no_item_and_ends(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    steps = Steps(store, HANDLED, {"items": list(range(6))}, monkeypatch)
    dispatched = steps.dispatcher.drain()
    (breaks,) = [event for event in dispatched if event.job == "breaks"]
    items = [event for event in dispatched if event.job == "fan"]
    assert [event.index for event in items] == [0, 1]
    steps.deliver(steps.report(breaks, "failed", error="RuntimeError: breaks"))
    (release,) = steps.dispatcher.drain()
    assert release.job == "release", "the run failed: its handlers run"

    # The items in flight report: recorded, and nothing more starts, not even a retry.
    fields: dict[str, Any] = (
        {"output": {}} if status == "success" else {"error": "RuntimeError: retried otherwise"}
    )
    for item in items:
        steps.deliver(steps.report(item, status, **fields))
    assert steps.dispatcher.drain() == [], "no item started or retried while the handlers run"
    fan_out = steps.fan_out()
    done = 2 if status == "success" else 0
    assert (fan_out["done"], fan_out["failed"], fan_out["notStarted"]) == (done, 2 - done, 4)

    # The fan-out job ends, its end is recorded like a plain job's, and the run ends after its handlers.
    end = steps.job_end("fan", "failed")
    assert end is not None
    if status == "success":
        assert end["error"] == "4 of 6 items of 'fan' were not started: the run failed first"
    steps.deliver(end)
    steps.deliver(steps.report(release, "success", output={}))
    run = store.load_run(steps.run_id)
    assert run is not None
    assert (run["status"], run["jobs"]["fan"]["state"], run["jobs"]["release"]["state"]) == (
        "failed",
        "failed",
        "succeeded",
    )
    assert run["error"] == "job 'breaks' failed after 1 attempt(s): RuntimeError: breaks"
    assert steps.dispatcher.drain() == []


def test_no_item_is_dispatched_once_the_failure_handlers_are(store: MongoStore) -> None:
    def fan(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError(f"item {event['index']} fails")

    def breaks(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("breaks")

    outcome = Driver(store, HANDLED, handlers={"fan": fan, "breaks": breaks}, faults=Faults(duplicate=2)).run(
        run_input={"items": list(range(6))}
    )

    attempts = [(event.job, event.index, event.attempt) for event in outcome.dispatched]
    handlers = attempts.index(("release", None, 1))
    before, after = set(attempts[: handlers + 1]), set(attempts[handlers + 1 :])
    # A duplicate report may repeat the dispatch of an attempt handed out before (the same invocation).
    assert after <= before, f"attempts first dispatched once the handlers were: {after - before}"
    assert outcome.executions["fan"] == len({a for a in before if a[0] == "fan"})
    assert outcome.run["status"] == "failed"
    assert outcome.run["jobs"]["fan"]["state"] == "failed"
    assert (outcome.executions["breaks"], outcome.executions["release"]) == (1, 1)


@pytest.mark.parametrize("late", ["success", "failed", "not_run"])
def test_the_counts_of_a_fan_out_settle_once_its_job_has_failed(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch, late: str
) -> None:
    spec = workflow("settle", {"p": {"fan": {"for_each": "input.items", "max_concurrency": 2, "retries": 0}}})
    steps = Steps(store, spec, {"items": list(range(5))}, monkeypatch)
    first, second = steps.dispatcher.drain()
    steps.deliver(steps.report(first, "failed", error="RuntimeError: item 0"))  # the job fails with it
    end = steps.job_end("fan", "failed")
    assert end is not None
    steps.deliver(end)
    run = store.load_run(steps.run_id)
    assert run is not None
    assert run["status"] == "failed"

    # Item 1 was in flight: it reports after the job failed, or (not_run) its attempt started
    # after the job failed and the wrapper refused it.
    fields: dict[str, Any] = {  # type: ignore[assignment]
        "success": {"output": {}},
        "failed": {"error": "RuntimeError: item 1"},
        "not_run": {"error": "attempt 1 of item 1 of 'fan' is stale: its job has moved on"},
    }[late]
    steps.deliver(steps.report(second, late, **fields))

    fan_out = steps.fan_out()
    done, failed = {"success": (1, 1), "failed": (0, 2), "not_run": (0, 1)}[late]
    assert (fan_out["done"], fan_out["failed"], fan_out["notStarted"]) == (done, failed, 5 - done - failed)
    assert [lane["index"] for lane in fan_out["lanes"].values()] == [None, None], "no item running for good"
    assert steps.dispatcher.drain() == []


def _retrying_fan_out(store: MongoStore, monkeypatch: pytest.MonkeyPatch, tolerated: int = 0) -> Steps:
    policy = RetryPolicy(max=2, delay=10, backoff=3.0, jitter="none", on=("ConnectionError",))
    spec = workflow(
        "paced",
        {
            "p": {
                "fan": {
                    "for_each": "input.items",
                    "max_concurrency": 2,
                    "retry": policy,
                    "tolerated_failures": tolerated,
                }
            }
        },
    )
    return Steps(store, spec, {"items": ["a", "b", "c"]}, monkeypatch)


def _fire_timers(steps: Steps, at: datetime) -> None:
    fire_due_timers(steps.store, at)
    for status in steps.store.run_statuses(steps.run_id):
        if status["status"] == "timer_fired":
            steps.deliver(status)


def test_an_items_retry_waits_out_the_retry_policys_delay_and_backoff(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = _retrying_fan_out(store, monkeypatch)
    first, _ = steps.dispatcher.drain()

    failed_at = utcnow()
    steps.deliver(steps.report(first, "failed", error="ConnectionError: the payment API is down"))

    assert steps.dispatcher.drain() == [], "no retry at once"
    run = store.read_run(steps.run_id)
    assert run is not None
    fan_out = run.jobs["fan"].fan_out
    assert fan_out is not None
    assert (fan_out.running, fan_out.waiting) == (1, 1)
    assert fan_out.summary() == "0/3 done, 0 failed, 1 running, 1 waiting to retry"
    due = fan_out.lanes[0].due_at
    assert due is not None
    assert timedelta(seconds=9) < due - failed_at < timedelta(seconds=11)

    _fire_timers(steps, failed_at + timedelta(seconds=5))
    assert steps.dispatcher.drain() == [], "not before its delay"
    _fire_timers(steps, failed_at + timedelta(seconds=11))
    (retried,) = steps.dispatcher.drain()
    assert (retried.index, retried.attempt) == (0, first.attempt + 1)

    # The second failure waits delay * backoff: 30 s.
    failed_again = utcnow()
    steps.deliver(steps.report(retried, "failed", error="ConnectionError: still down"))
    assert steps.dispatcher.drain() == []
    due = steps.fan_out()["lanes"]["0"]["dueAt"]
    assert timedelta(seconds=29) < due.replace(tzinfo=UTC) - failed_again < timedelta(seconds=31)
    _fire_timers(steps, failed_again + timedelta(seconds=31))
    (third,) = steps.dispatcher.drain()
    assert (third.index, third.attempt) == (0, first.attempt + 2)


def test_an_items_retry_waiting_when_its_run_fails_is_counted_failed(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = _retrying_fan_out(store, monkeypatch)
    first, second = steps.dispatcher.drain()
    steps.deliver(steps.report(first, "failed", error="ConnectionError: down"))  # waits to retry

    # Item 1 fails with an error its policy does not retry: the job fails, and the run.
    steps.deliver(steps.report(second, "failed", error="ValueError: bad customer"))
    end = steps.job_end("fan", "failed")
    assert end is not None
    steps.deliver(end)
    run = store.load_run(steps.run_id)
    assert run is not None
    assert run["status"] == "failed"

    fan_out = steps.fan_out()
    assert (fan_out["done"], fan_out["failed"], fan_out["notStarted"]) == (0, 2, 1)
    assert [lane["index"] for lane in fan_out["lanes"].values()] == [None, None]
    _fire_timers(steps, utcnow() + timedelta(minutes=5))
    assert steps.dispatcher.drain() == [], "the retry never starts"


def test_an_item_whose_retry_is_given_up_keeps_the_error_it_failed_with(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Item 0 waits to retry its ConnectionError when item 1's ValueError fails the job: the
    # failed items name why item 0 failed, not only that its retry did not start.
    steps = _retrying_fan_out(store, monkeypatch)
    first, second = steps.dispatcher.drain()
    steps.deliver(steps.report(first, "failed", error="ConnectionError: the payment API is down"))
    steps.deliver(steps.report(second, "failed", error="ValueError: bad customer"))
    end = steps.job_end("fan", "failed")
    assert end is not None
    steps.deliver(end)

    failed = {item.index: item.error for item in store.items().failed_items(steps.run_id, "fan", 10)}
    assert failed == {
        0: f"ConnectionError: the payment API is down (attempt {first.attempt}; its retry, attempt "
        f"{first.attempt + 1}, was not started: the job stopped)",
        1: "ValueError: bad customer",
    }
