"""The invariants of docs/architecture.md ("Invariants") under duplicated, reordered and
concurrent delivery and crashes at every write, on a real MongoDB server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

import pymongo
import pytest

from benchmarks.orchestration import race
from benchmarks.seed_port import SeedStateMachineJob, seed_state_machine
from cdk_app.local.atlas_events import envelope
from cdk_app.local.faults import CrashAtStep, CrashingStore, InjectedCrash
from runtime import limits
from runtime.clock import utcnow
from runtime.definition.model import Job, Phase, Workflow
from runtime.documents.envelopes import parse_status_event
from runtime.documents.events import JobEvent
from runtime.documents.leases import Lease, lease_id
from runtime.documents.run import StatusEvent, terminal_id
from runtime.handlers.job import stub_handler
from runtime.ports import InvocationRefused
from runtime.service.job_attempt import run_attempt
from runtime.service.orchestrator import Orchestrator
from runtime.service.runs import start_run
from runtime.statuses import StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import (
    CATCH_THE_FISH,
    CommandNames,
    Driver,
    Faults,
    Outcome,
    RecordingDispatcher,
    race_orchestrators,
    workflow,
)

pytestmark = pytest.mark.faults

RACERS = 50
LIVE = timedelta(minutes=5)
"""A lease that stays live for as long as a test runs."""
EVENT_FIXTURES = Path(__file__).parent / "fixtures" / "events"
"""Copies of the shapes AWS and Atlas document (shared/fixtures/)."""


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def _summary(outcome: Outcome) -> dict[str, Any]:
    return {
        "status": outcome.run["status"],
        "jobs": outcome.job_states(),
        "outputs": {name: job.get("output") for name, job in outcome.run["jobs"].items()},
    }


def _flaky(failures: int) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["attempt"] <= failures:
            raise RuntimeError(f"attempt {event['attempt']} fails on purpose")
        return {"attempt": event["attempt"]}

    return handler


MIXED = workflow(
    "mixed",
    {
        "p1": {
            "a": {},
            "b": {"after": ["a"]},
            "c": {"after": ["a"], "when": "input.cheap"},
            "d": {"after": ["b", "c"]},
            "e": {"after": ["a"]},
        },
        "p2": {"f": {}, "g": {"after": ["f"]}},
    },
)
MIXED_HANDLERS = {"b": _flaky(1), "f": _flaky(2)}


def _baseline(store: MongoStore, spec: Workflow = MIXED, **kwargs: Any) -> dict[str, Any]:
    return _summary(Driver(store, spec, handlers=MIXED_HANDLERS).run(**kwargs))


def _check_same_as_fault_free(store: MongoStore, outcome: Outcome, run_input: Any = None) -> None:
    assert _summary(outcome) == _baseline(store, run_input=run_input)
    attempts = {
        name: job["attempt"] for name, job in outcome.run["jobs"].items() if job["state"] != "skipped"
    }
    assert dict(outcome.executions) == attempts, "every attempt's user code ran exactly once"


# -- concurrency -------------------------------------------------------------------------------


def _race_run(store: MongoStore, mongo_uri: str) -> tuple[str, RecordingDispatcher]:
    jobs: dict[str, dict[str, Any]] = {f"j{i:02d}": {} for i in range(RACERS)}
    spec = workflow("race", {"wide": jobs, "after": {"final": {}}})
    dispatcher = RecordingDispatcher()
    run_id = start_run(store, spec).run_id
    started = store.find_status(run_id, None, None, "workflow_started", 0)
    assert started is not None
    settings = store.settings
    Orchestrator(store, dispatcher).handle(envelope(started, settings.database, settings.statuses_collection))
    assert len(dispatcher.drain()) == RACERS
    return run_id, dispatcher


def _race(handlers: list[Callable[[], object]]) -> None:
    errors = race(handlers)
    assert not errors, errors


def test_fifty_parallel_completions_lose_nothing_and_advance_the_phase_once(
    store: MongoStore, mongo_uri: str
) -> None:
    run_id, dispatcher = _race_run(store, mongo_uri)
    documents = [
        {"runId": run_id, "workflow": "race", "phase": "wide", "job": job, "status": "success", "attempt": 1}
        | {"output": {"job": job}}
        for job in (f"j{i:02d}" for i in range(RACERS))
    ]

    errors = race_orchestrators(store, mongo_uri, documents, dispatcher)

    assert not errors, errors
    run = store.load_run(run_id)
    assert run is not None
    lost = [name for name, job in run["jobs"].items() if name != "final" and job["state"] != "succeeded"]
    assert lost == []
    assert [e.job for e in dispatcher.drain()] == ["final"], "the next phase starts exactly once"
    assert run["phase"] == "after"
    assert len([s for s in store.run_statuses(run_id) if s["status"] == "phase_completed"]) == 1


def test_the_seed_port_loses_completions_in_the_same_race(store: MongoStore, mongo_uri: str) -> None:
    spec = workflow("race", {"wide": {f"j{i:02d}": {} for i in range(RACERS)}})
    database = store.runs.database
    lost_per_round = []
    for round_number in range(3):
        state_id = f"seed-{round_number}"
        database["state-machines"].insert_one(seed_state_machine(spec, state_id))
        clients: list[pymongo.MongoClient[dict]] = [pymongo.MongoClient(mongo_uri) for _ in range(RACERS)]

        def seed_job(job: str, client: pymongo.MongoClient[dict], state: str) -> Callable[[], object]:
            document = {"stateId": state, "job": job, "status": "success"}
            return lambda: SeedStateMachineJob(client[database.name]).handle(document)

        try:
            _race([seed_job(f"j{i:02d}", client, state_id) for i, client in enumerate(clients)])
        finally:
            for client in clients:
                client.close()
        state = database["state-machines"].find_one({"_id": state_id})
        assert state is not None
        lost_per_round.append(RACERS - len(set(state["phases"]["wide"]["finished"])))
    assert sum(lost_per_round) > 0, "the seed's read-modify-write must lose completions under this race"


# -- duplicates, reordering, crashes ------------------------------------------------------------


def test_every_event_delivered_three_times_changes_nothing(store: MongoStore) -> None:
    outcome = Driver(store, MIXED, handlers=MIXED_HANDLERS, faults=Faults(duplicate=3)).run(
        run_input={"cheap": True}
    )
    _check_same_as_fault_free(store, outcome, run_input={"cheap": True})
    assert outcome.count("workflow_succeeded") == 1


@pytest.mark.parametrize("seed", range(8))
def test_shuffled_delivery_changes_nothing(store: MongoStore, seed: int) -> None:
    faults = Faults(duplicate=2, shuffle=True, seed=seed)
    outcome = Driver(store, MIXED, handlers=MIXED_HANDLERS, faults=faults).run()
    _check_same_as_fault_free(store, outcome)


@pytest.mark.parametrize("step", range(1, 9))
def test_a_crash_at_any_write_or_dispatch_then_redelivery_changes_nothing(
    store: MongoStore, step: int
) -> None:
    # Steps count the points before and after each write and dispatch of one handling: every
    # handling of the run crashes once at that step (if it gets that far), then is redelivered.
    faults = Faults(crash_plan=lambda: CrashAtStep(step))
    outcome = Driver(store, MIXED, handlers=MIXED_HANDLERS, faults=faults).run(run_input={"cheap": True})
    _check_same_as_fault_free(store, outcome, run_input={"cheap": True})
    assert outcome.crashes > 0


def test_crashes_combined_with_duplicates_and_shuffling(store: MongoStore) -> None:
    for seed in range(4):
        faults = Faults(duplicate=2, shuffle=True, seed=seed, crash_plan=partial(CrashAtStep, 2 + seed))
        outcome = Driver(store, CATCH_THE_FISH, faults=faults).run()
        assert outcome.run["status"] == "succeeded"
        assert set(outcome.job_states().values()) == {("succeeded", 1)}
        assert set(outcome.executions.values()) == {1}


# -- Lambda giving up on a job -------------------------------------------------------------------


def _failure_record(run_id: str, job: str, attempt: int, request_id: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((EVENT_FIXTURES / "lambda-async-on-failure.record.json").read_text())
    record["requestContext"]["requestId"] = request_id
    record["requestPayload"].update(run_id=run_id, workflow="dies", phase="p", job=job, attempt=attempt)
    return record


def test_a_job_whose_lambda_dies_is_retried_then_fails_the_run(store: MongoStore) -> None:
    spec = workflow("dies", {"p": {"boat": {"retries": 1}}})
    dispatcher = RecordingDispatcher()
    orchestrator = Orchestrator(store, dispatcher)
    settings = store.settings
    run_id = start_run(store, spec).run_id

    def deliver_new_statuses(seen: set[Any]) -> None:
        for status in store.run_statuses(run_id):
            if status["_id"] not in seen and status["status"] in ("workflow_started", "success", "failed"):
                seen.add(status["_id"])
                orchestrator.handle(envelope(status, settings.database, settings.statuses_collection))

    seen: set[Any] = set()
    deliver_new_statuses(seen)
    for attempt in (1, 2):
        (job_event,) = dispatcher.drain()
        assert job_event.attempt == attempt
        # the function claims the attempt, then dies (timeout) on every Lambda retry
        request_id = f"req-{attempt}"
        store.insert_status(
            {"runId": run_id, "workflow": "dies", "phase": "p", "job": "boat", "status": "started"}
            | {"attempt": attempt, "requestId": request_id}
        )
        outcome = orchestrator.handle(_failure_record(run_id, "boat", attempt, request_id))
        assert outcome.recorded == ("failed",)
        deliver_new_statuses(seen)

    run = store.load_run(run_id)
    assert run is not None
    assert run["status"] == "failed"
    assert run["jobs"]["boat"]["attempt"] == 2
    assert "Task timed out" in run["error"]
    assert dispatcher.drain() == []


def test_an_on_failure_record_is_ignored_when_the_attempt_reported_or_belongs_to_another_request(
    store: MongoStore,
) -> None:
    spec = workflow("dies", {"p": {"boat": {}}})
    run_id = start_run(store, spec).run_id
    orchestrator = Orchestrator(store, RecordingDispatcher())
    base = {"runId": run_id, "workflow": "dies", "phase": "p", "job": "boat", "attempt": 1}
    # The claim is the attempt's lease now (it was the `started` status, which anyone could outlive).
    held = Lease(
        lease_id=lease_id(run_id, "boat", 1),
        owner="owner",
        token="t",
        expires_at=utcnow() + LIVE,
        workflow="dies",
    )
    assert store.acquire_lease(held)

    assert orchestrator.handle(_failure_record(run_id, "boat", 1, "duplicate")).action == "ignored"
    store.insert_status(base | {"_id": terminal_id(run_id, "boat", 1), "status": "success", "output": {}})
    assert orchestrator.handle(_failure_record(run_id, "boat", 1, "owner")).action == "ignored"
    assert store.find_status(run_id, "p", "boat", "failed", 1) is None


# -- the job wrapper -----------------------------------------------------------------------------


def _job_payload(run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "workflow": "w",
        "phase": "p",
        "job": "j",
        "attempt": 1,
        "input": {},
        "results": {},
    }


def test_an_attempt_runs_once_whoever_delivers_it_again(store: MongoStore) -> None:
    # Replaces the takeover tests: a claim is a lease now, never taken over (tests/test_delivery_faults.py).
    calls: list[str] = []

    def user(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event["job"])
        return {"ok": True}

    event = _job_payload("r1")

    assert run_attempt(store, user, event, None, "first").outcome == "success"
    assert run_attempt(store, user, event, None, "first").outcome == "already-finished"
    assert run_attempt(store, user, event, None, "someone-else").outcome == "already-finished"
    assert calls == ["j"]


@pytest.mark.parametrize(
    "output",
    [
        pytest.param({1: "integer key"}, id="non-string-key"),
        pytest.param({"when": object()}, id="not-json"),
        pytest.param({"x": float("nan")}, id="nan-is-not-json"),
        pytest.param({"blob": "x" * limits.OUTPUT_MAX_BYTES}, id="too-large-to-keep"),
    ],
)
def test_an_output_that_cannot_be_stored_fails_the_attempt_with_the_reason(
    store: MongoStore, output: Any
) -> None:
    result = run_attempt(store, lambda event, context: output, _job_payload("r4"), None, "req")

    assert result.outcome == "failed"
    assert "the job's output" in (result.error or "")
    assert store.find_status("r4", "p", "j", "failed", 1) is not None


def test_the_stub_succeeds_with_a_note_that_it_is_a_stub(store: MongoStore) -> None:
    event = {"run_id": "r2", "workflow": "w", "phase": "p", "job": "j", "attempt": 1}
    result = run_attempt(store, stub_handler, event, None, "req")
    assert result.outcome == "success"
    assert result.output == {"stub": True, "job": "j"}


# -- a definition edited while a run is in flight ------------------------------------------------


def test_a_run_finishes_on_the_definition_it_started_with(store: MongoStore) -> None:
    v1 = workflow("edited", {"p": {"a": {}, "b": {"after": ["a"]}}})
    v2 = replace(v1, phases=(*v1.phases, Phase(name="q", jobs=(Job(name="new_job", phase="q"),))))
    dispatcher = RecordingDispatcher()
    orchestrator = Orchestrator(store, dispatcher)
    settings = store.settings
    run_id = start_run(store, v1, run_id="in-flight").run_id
    started = store.find_status(run_id, None, None, "workflow_started", 0)
    assert started is not None
    orchestrator.handle(envelope(started, settings.database, settings.statuses_collection))

    # v2 is deployed now: new runs take it, the run in flight keeps its snapshot
    assert start_run(store, v2, run_id="after-deploy").created
    for _ in range(2):
        (job,) = dispatcher.drain()
        run_attempt(store, stub_handler, job.to_payload(), None, uuid.uuid4().hex)
        success = store.find_status(run_id, "p", job.job, "success", 1)
        assert success is not None
        orchestrator.handle(envelope(success, settings.database, settings.statuses_collection))

    run = store.load_run(run_id)
    assert run is not None
    assert run["status"] == "succeeded"
    assert set(run["jobs"]) == {"a", "b"}
    assert dispatcher.drain() == []


# -- malformed events ---------------------------------------------------------------------------


def _event(**document: Any) -> dict[str, Any]:
    return {
        "detail": {"operationType": "insert", "fullDocument": document, "ns": {"db": "d", "coll": "statuses"}}
    }


GOOD = {"runId": "r", "workflow": "w", "phase": "p", "job": "j", "status": "success", "attempt": 1}


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        pytest.param("not json {", "not JSON", id="not-json"),
        pytest.param(["a", "list"], "must be a JSON object", id="not-an-object"),
        pytest.param({"source": "x"}, "no 'detail'", id="no-detail"),
        pytest.param({"detail": {"operationType": "delete"}}, "only 'insert'", id="delete"),
        pytest.param(
            _event(**{k: v for k, v in GOOD.items() if k != "runId"}), "missing field 'runId'", id="no-run"
        ),
        pytest.param(_event(**GOOD | {"attempt": "one"}), "'attempt' has the wrong type", id="attempt-type"),
        pytest.param(_event(**GOOD | {"attempt": 0}), "attempt must be >= 1", id="attempt-zero"),
        pytest.param(_event(**GOOD | {"status": "exploded"}), "unknown status", id="status"),
        pytest.param(_event(**GOOD | {"runId": "no-such-run"}), "unknown run", id="unknown-run"),
        pytest.param(
            {"requestContext": {}, "requestPayload": {"run_id": "r"}}, "missing field", id="bad-record"
        ),
    ],
)
def test_a_malformed_event_is_dropped_with_the_reason(store: MongoStore, event: Any, reason: str) -> None:
    outcome = Orchestrator(store, RecordingDispatcher()).handle(event)
    assert outcome.action == "dropped"
    assert reason in outcome.reason


def test_an_event_for_a_job_the_run_does_not_have_is_dropped(store: MongoStore) -> None:
    run_id = start_run(store, workflow("w", {"p": {"j": {}}})).run_id
    outcome = Orchestrator(store, RecordingDispatcher()).handle(
        _event(**GOOD | {"runId": run_id, "job": "ghost"})
    )
    assert outcome.action == "dropped"
    assert "has no job 'ghost'" in outcome.reason


def test_extended_json_events_are_understood(store: MongoStore) -> None:
    spec = workflow("w", {"p": {"j": {}, "k": {"after": ["j"]}}})
    dispatcher = RecordingDispatcher()
    run_id = start_run(store, spec).run_id
    orchestrator = Orchestrator(store, dispatcher)
    orchestrator.handle(
        _event(runId=run_id, workflow="w", status="workflow_started", attempt={"$numberInt": "0"})
    )
    (job,) = dispatcher.drain()
    extended = _event(
        _id={"$oid": "6761b2e5c0ffee0123456789"},
        runId=run_id,
        workflow="w",
        phase="p",
        job="j",
        status="success",
        attempt={"$numberInt": "1"},
        output={"n": {"$numberLong": "7"}},
        date={"$date": {"$numberLong": "1795780805101"}},
    )
    outcome = orchestrator.handle(extended)
    assert [e.job for e in outcome.dispatched] == ["k"]
    assert outcome.dispatched[0].results == {"j": {"n": 7}}


# -- cost of the hot path ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("finished", "expected"),
    [
        pytest.param("a", ["find", "update"], id="success-that-dispatches-the-next-jobs"),
        pytest.param("c", ["find", "update"], id="success-that-dispatches-nothing"),
    ],
)
def test_a_success_that_does_not_end_a_phase_costs_at_most_two_commands(
    store: MongoStore, mongo_uri: str, finished: str, expected: list[str]
) -> None:
    spec = workflow("hot", {"p": {"a": {}, "c": {}, "b": {"after": ["a"]}}})
    run_id, settings = start_run(store, spec).run_id, store.settings
    dispatcher = RecordingDispatcher()
    started = store.find_status(run_id, None, None, "workflow_started", 0)
    assert started is not None
    Orchestrator(store, dispatcher).handle(envelope(started, settings.database, settings.statuses_collection))
    success = {
        "runId": run_id,
        "workflow": "hot",
        "phase": "p",
        "job": finished,
        "status": "success",
        "attempt": 1,
    }

    listener = CommandNames()
    client: pymongo.MongoClient[dict] = pymongo.MongoClient(
        mongo_uri, event_listeners=[listener], tz_aware=True
    )
    try:
        client.admin.command("ping")
        listener.names.clear()
        Orchestrator(MongoStore(client, settings), dispatcher).handle(
            envelope(success, settings.database, settings.statuses_collection)
        )
        commands = list(listener.names)
    finally:
        client.close()
    assert commands == expected


# -- the documented event shapes ------------------------------------------------------------------


def test_the_documented_atlas_event_parses_and_the_local_envelope_has_its_shape() -> None:
    documented = json.loads((EVENT_FIXTURES / "atlas-trigger-insert.eventbridge.json").read_text())
    event = parse_status_event(documented)
    assert (event.run_id, event.job, event.status, event.attempt) == (
        "run-2026-11-26-001",
        "rent_a_boat",
        "success",
        1,
    )
    assert event.output == {"boat": "Sea Bream II"}

    local = envelope(documented["detail"]["fullDocument"], "workflows", "statuses")
    assert set(documented) == set(local)
    assert set(documented["detail"]) - {"_id", "clusterTime"} == set(local["detail"])
    assert local["detail-type"] == documented["detail-type"]
    assert local["detail"]["fullDocument"] == documented["detail"]["fullDocument"]
    assert parse_status_event(local) == event


def test_a_when_failing_beside_a_ready_job_fails_the_run_and_no_redelivery_starts_that_job(
    store: MongoStore,
) -> None:
    spec = workflow("bad_when_beside", {"a": {"first": {}, "second": {"when": "length(input.n) > `0`"}}})
    for faults in (Faults(), Faults(duplicate=3), Faults(crash_plan=partial(CrashAtStep, 2))):
        outcome = Driver(store, spec, faults=faults).run(run_input={"n": 5})
        assert outcome.run["status"] == "failed"
        assert "the 'when' of 'second' failed" in outcome.run["error"]
        assert outcome.job_states() == {"first": ("pending", 0), "second": ("failed", 0)}
        assert outcome.executions == {}
        assert outcome.dispatched == []


class _RemovedJobs(RecordingDispatcher):
    """A deployment where the given jobs' functions no longer exist."""

    def __init__(self, removed: set[str]) -> None:
        super().__init__()
        self.removed = removed

    def dispatch(self, event: JobEvent) -> None:
        if event.job in self.removed:
            raise InvocationRefused(f"the job's function w-job-{event.job} does not exist")
        super().dispatch(event)


def test_a_job_removed_from_the_spec_while_a_run_is_in_flight_fails_that_run_instead_of_hanging(
    store: MongoStore,
) -> None:
    spec = workflow("w", {"p": {"kept": {}, "removed": {"after": ["kept"], "retries": 1}}})
    dispatcher = _RemovedJobs({"removed"})
    orchestrator = Orchestrator(store, dispatcher)
    settings = store.settings
    run_id = start_run(store, spec).run_id
    seen: set[Any] = set()
    for _ in range(10):
        fresh = [s for s in store.run_statuses(run_id) if s["_id"] not in seen]
        seen.update(s["_id"] for s in fresh)
        for status in fresh:
            orchestrator.handle(envelope(status, settings.database, settings.statuses_collection))
        for job in dispatcher.drain():
            run_attempt(store, stub_handler, job.to_payload(), None, uuid.uuid4().hex)

    run = store.load_run(run_id)
    assert run is not None
    assert run["status"] == "failed"
    assert run["jobs"]["removed"] == run["jobs"]["removed"] | {"state": "failed", "attempt": 2}
    assert "does not exist" in run["error"]


# -- the optimistic write losing to a concurrent handler -----------------------------------------


class _Interleaved:
    """A MongoStore on which another handler runs just before this handler's version-guarded write,
    as when two orchestrator instances read the same run at the same time."""

    def __init__(self, store: MongoStore, competitor: Callable[[], object]) -> None:
        self._store = store
        self._competitor: Callable[[], object] | None = competitor
        self.fallbacks = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def apply_transition(
        self, run_id: str, conditions: dict[str, Any], changes: dict[str, Any], earliest: Any = None
    ) -> bool:
        if "version" in conditions and self._competitor is not None:
            competitor, self._competitor = self._competitor, None
            competitor()
        return self._store.apply_transition(run_id, conditions, changes, earliest)

    def record_job_success(self, *args: Any) -> Any:
        self.fallbacks += 1
        return self._store.record_job_success(*args)


def _started_run(store: MongoStore, spec: Workflow, dispatcher: RecordingDispatcher) -> str:
    run_id = start_run(store, spec).run_id
    started = store.find_status(run_id, None, None, "workflow_started", 0)
    assert started is not None
    Orchestrator(store, dispatcher).handle(_envelope(store, started))
    return run_id


def _envelope(store: MongoStore, document: dict[str, Any]) -> dict[str, Any]:
    return envelope(document, store.settings.database, store.settings.statuses_collection)


def _report(
    store: MongoStore, run_id: str, job: str, status: str, attempt: int = 1, **fields: Any
) -> dict[str, Any]:
    event = StatusEvent(
        run_id=run_id, workflow="w", status=StatusName(status), phase="p", job=job, attempt=attempt, **fields
    )
    document = event.to_document(utcnow())
    store.insert_status(document)
    return _envelope(store, document)


def test_a_lost_optimistic_write_falls_back_and_the_join_is_claimed_once(store: MongoStore) -> None:
    spec = workflow("w", {"p": {"a": {}, "b": {}, "c": {"after": ["a", "b"]}}})
    dispatcher = RecordingDispatcher()
    run_id = _started_run(store, spec, dispatcher)
    dispatcher.drain()
    success_a, success_b = _report(store, run_id, "a", "success"), _report(store, run_id, "b", "success")
    interleaved = _Interleaved(store, lambda: Orchestrator(store, dispatcher).handle(success_a))

    Orchestrator(cast(MongoStore, interleaved), dispatcher).handle(success_b)

    assert interleaved.fallbacks == 1
    assert [(e.job, e.attempt) for e in dispatcher.drain()] == [("c", 1)]
    run = store.load_run(run_id)
    assert run is not None
    assert {name: job["state"] for name, job in run["jobs"].items()} == {
        "a": "succeeded",
        "b": "succeeded",
        "c": "dispatched",
    }


def test_a_lost_optimistic_write_to_the_runs_failure_records_the_success_and_starts_nothing(
    store: MongoStore,
) -> None:
    spec = workflow("w", {"p": {"a": {}, "b": {"retries": 0}, "c": {"after": ["a"]}}, "q": {"d": {}}})
    dispatcher = RecordingDispatcher()
    run_id = _started_run(store, spec, dispatcher)
    dispatcher.drain()
    failure_b = _report(store, run_id, "b", "failed", error="boom")
    success_a = _report(store, run_id, "a", "success")
    interleaved = _Interleaved(store, lambda: Orchestrator(store, dispatcher).handle(failure_b))

    Orchestrator(cast(MongoStore, interleaved), dispatcher).handle(success_a)

    run = store.load_run(run_id)
    assert run is not None
    assert run["status"] == "failed"
    assert run["jobs"]["a"]["state"] == "succeeded"
    assert dispatcher.drain() == []
    assert store.find_status(run_id, None, None, "workflow_succeeded", 0) is None


def test_a_duplicate_success_handled_at_the_same_time_dispatches_the_next_job_once(store: MongoStore) -> None:
    spec = workflow("w", {"p": {"a": {}, "c": {"after": ["a"]}}})
    dispatcher = RecordingDispatcher()
    run_id = _started_run(store, spec, dispatcher)
    dispatcher.drain()
    success_a = _report(store, run_id, "a", "success")
    interleaved = _Interleaved(store, lambda: Orchestrator(store, dispatcher).handle(success_a))

    Orchestrator(cast(MongoStore, interleaved), dispatcher).handle(success_a)

    assert [(e.job, e.attempt) for e in dispatcher.drain()] == [("c", 1)]


def test_a_crash_after_the_fallback_recorded_the_success_is_finished_by_the_redelivery(
    store: MongoStore,
) -> None:
    spec = workflow("w", {"p": {"a": {}, "b": {}, "c": {"after": ["a", "b"]}}, "q": {"d": {}}})
    dispatcher = RecordingDispatcher()
    run_id = _started_run(store, spec, dispatcher)
    dispatcher.drain()
    success_a, success_b = _report(store, run_id, "a", "success"), _report(store, run_id, "b", "success")
    interleaved = _Interleaved(store, lambda: Orchestrator(store, dispatcher).handle(success_a))
    crash_after_fallback = CrashingStore(
        cast(MongoStore, interleaved), CrashAtStep(4)
    )  # after record_job_success

    with pytest.raises(InjectedCrash, match="after record_job_success"):
        Orchestrator(cast(MongoStore, crash_after_fallback), dispatcher).handle(success_b)
    assert dispatcher.drain() == []
    Orchestrator(store, dispatcher).handle(success_b)

    assert [(e.job, e.attempt) for e in dispatcher.drain()] == [("c", 1)]


def test_a_when_raising_something_else_than_a_jmespath_error_fails_the_run(store: MongoStore) -> None:
    spec = workflow("w", {"p": {"a": {}, "b": {"after": ["a"], "when": "ceil(to_number(input.x)) > `0`"}}})
    outcome = Driver(store, spec).run(run_input={"x": "1.0e999"})

    assert outcome.run["status"] == "failed"
    assert "the 'when' of 'b' failed: cannot convert float infinity" in outcome.run["error"]
    assert outcome.run["jobs"]["a"]["state"] == "succeeded"


def test_an_invocation_lambda_refuses_for_good_fails_the_attempt_instead_of_stalling(
    store: MongoStore,
) -> None:
    class Refusing(RecordingDispatcher):
        def dispatch(self, event: JobEvent) -> None:
            raise InvocationRefused(f"the event for w-job-{event.job} is larger than Lambda accepts")

    spec = workflow("w", {"p": {"a": {"retries": 0}}})
    dispatcher = Refusing()
    run_id = _started_run(store, spec, dispatcher)
    failed = store.find_status(run_id, "p", "a", "failed", 1)
    assert failed is not None
    assert "larger than Lambda accepts" in failed["error"]
    Orchestrator(store, dispatcher).handle(_envelope(store, failed))

    run = store.load_run(run_id)
    assert run is not None
    assert run["status"] == "failed"
