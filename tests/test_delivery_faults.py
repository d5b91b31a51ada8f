"""Adversarial delivery (issue 16): one fault test per finding, each against a real MongoDB
server, each failing on the engine as it was before leases, terminal claims and limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

import pymongo
import pytest

from cdk_app.local.atlas_events import envelope
from cdk_app.local.faults import InjectedCrash
from runtime import limits
from runtime.clock import utcnow
from runtime.definition.model import Workflow
from runtime.documents.events import JobEvent
from runtime.documents.leases import Lease, lease_id
from runtime.documents.run import StatusEvent
from runtime.errors import DocumentRejected
from runtime.service.job_attempt import LeaseSettings, run_attempt
from runtime.service.orchestrator import DISPATCH_BATCH, Orchestrator
from runtime.service.runs import start_run
from runtime.statuses import JobState, StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import Driver, RecordingDispatcher, workflow

pytestmark = pytest.mark.faults

SHORT = LeaseSettings(
    duration=timedelta(milliseconds=600),
    renew_every=timedelta(milliseconds=100),
    poll_every=timedelta(milliseconds=20),
    longest_wait=timedelta(seconds=5),
)
"""Leases that expire in well under a second, so the lease tests run in seconds."""


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def _envelope(store: MongoStore, document: dict[str, Any]) -> dict[str, Any]:
    return envelope(document, store.settings.database, store.settings.statuses_collection)


def _started(store: MongoStore, spec: Any, dispatcher: RecordingDispatcher, **options: Any) -> str:
    run_id = start_run(store, spec, **options).run_id
    started = store.find_status(run_id, None, None, "workflow_started", 0)
    assert started is not None
    Orchestrator(store, dispatcher).handle(_envelope(store, started))
    return run_id


def _deliver(store: MongoStore, dispatcher: RecordingDispatcher, run_id: str, job: str, status: str) -> None:
    document = store.find_status(run_id, "p", job, status, 1)
    assert document is not None
    Orchestrator(store, dispatcher).handle(_envelope(store, document))


def _terminals(store: MongoStore, run_id: str, job: str, attempt: int = 1) -> list[str]:
    return [
        s["status"]
        for s in store.run_statuses(run_id)
        if s["job"] == job and s["attempt"] == attempt and s["status"] in ("success", "failed", "not_run")
    ]


def _raise(message: str) -> Callable[[dict[str, Any], Any], Any]:
    def handler(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError(message)

    return handler


# -- 1. a large error message -----------------------------------------------------------------


def test_a_huge_exception_message_gives_a_bounded_error_whose_event_fits_eventbridge(
    store: MongoStore,
) -> None:
    message = "head-of-message " + "x" * 150_000 + " tail-of-message"
    spec = workflow("w", {"p": {"big": {"retries": 1}}})

    outcome = Driver(store, spec, handlers={"big": _raise(message)}).run()

    assert outcome.run["status"] == "failed"
    assert outcome.run["jobs"]["big"]["attempt"] == 2
    failures = [s for s in outcome.statuses if s["status"] == "failed"]
    assert len(failures) == 2
    for failure in failures:
        error = failure["error"]
        assert len(error) <= limits.ERROR_MESSAGE_MAX_CHARS + limits.ERROR_TRACE_MAX_CHARS + 100
        assert "head-of-message" in error
        assert "tail-of-message" in error
        assert "characters cut" in error
        assert limits.json_bytes(_envelope(store, failure)) <= limits.EVENTBRIDGE_ENTRY_BYTES


# -- 2. sizes that add up ---------------------------------------------------------------------

MAX_OUTPUT = {"blob": "x" * 131_000}
"""131,012 bytes of JSON: just under the output limit."""


def _max_output(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return MAX_OUTPUT


def test_outputs_that_add_up_past_16_mb_fail_the_run_naming_the_job_and_the_sizes(store: MongoStore) -> None:
    jobs: dict[str, dict[str, Any]] = {f"j{index:03d}": {"retries": 0} for index in range(12)}
    spec = workflow("w", {"p": jobs})
    # The outputs of 120 earlier jobs, as 15.75 MB of padding: the embedded server takes a minute
    # to write 120 outputs one by one into a document this large.
    run_id = start_run(store, spec).run_id
    for index in range(15):
        store.runs.update_one({"_id": run_id}, {"$set": {f"padding.p{index}": "x" * 1_050_000}})

    outcome = Driver(store, spec, handlers=dict.fromkeys(jobs, _max_output)).run(run_id=run_id)

    assert outcome.run["status"] == "failed"
    error = outcome.run["error"]
    assert "the output of job 'j0" in error
    assert "would grow the run document from" in error
    assert f"{limits.MONGODB_DOCUMENT_BYTES:,}-byte document limit" in error
    failed = [name for name, job in outcome.run["jobs"].items() if job["state"] == "failed"]
    assert len(failed) == 1
    assert failed[0] in error
    assert outcome.count("workflow_failed") == 1


def test_a_join_whose_results_exceed_the_invoke_limit_gets_them_by_reference(store: MongoStore) -> None:
    feeders: dict[str, dict[str, Any]] = {f"f{index}": {} for index in range(8)}
    spec = workflow("w", {"p": {**feeders, "join": {"after": list(feeders), "retries": 0}}})
    seen: dict[str, Any] = {}

    def join(event: dict[str, Any], context: Any) -> None:
        seen.update(event["results"])

    outcome = Driver(store, spec, handlers={**dict.fromkeys(feeders, _max_output), "join": join}).run()

    assert outcome.run["status"] == "succeeded"
    assert outcome.executions["join"] == 1
    assert seen == dict.fromkeys(feeders, MAX_OUTPUT)


def test_an_item_whose_event_still_exceeds_the_invoke_limit_fails_that_attempt(store: MongoStore) -> None:
    # The input and the item travel in the event whole: with no output left to move by
    # reference, an event past the limit is the attempt's failure, not a retried invoke.
    spec = workflow("w", {"p": {"each": {"for_each": "input.items", "retries": 0}}})
    run_input = {"pad": "x" * (limits.JOB_EVENT_MAX_BYTES - 200_000), "items": ["y" * 190_000]}

    outcome = Driver(store, spec).run(run_input=run_input)

    assert outcome.run["status"] == "failed"
    assert outcome.executions["each"] == 0
    failures = [s for s in outcome.statuses if s["status"] == "failed"]
    assert failures
    assert all(s["job"] == "each" for s in failures)
    assert f"at most {limits.JOB_EVENT_MAX_BYTES:,} fit a Lambda invocation" in failures[0]["error"]


def test_mongodbs_refusal_of_a_document_is_recognised_as_deterministic(store: MongoStore) -> None:
    run_id = start_run(store, workflow("w", {"p": {"a": {}}})).run_id
    too_much = {f"jobs.a.pad{index}": "x" * 1_000_000 for index in range(17)}

    with pytest.raises(DocumentRejected, match="could not update run"):
        store.apply_transition(run_id, {}, too_much)


class _RefusingOnce:
    """A store on which MongoDB refuses the next version-guarded write for its size, as when the
    engine's estimate was short."""

    def __init__(self, store: MongoStore) -> None:
        self._store = store
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def apply_transition(
        self, run_id: str, conditions: dict[str, Any], changes: dict[str, Any], earliest: Any = None
    ) -> bool:
        if "version" in conditions and not self.refused:
            self.refused += 1
            raise DocumentRejected(
                "could not update run: Resulting document after update is larger than 16777216"
            )
        return self._store.apply_transition(run_id, conditions, changes, earliest)


def test_a_write_mongodb_refuses_fails_the_run_instead_of_being_retried(store: MongoStore) -> None:
    dispatcher = RecordingDispatcher()
    run_id = _started(store, workflow("w", {"p": {"a": {}, "b": {"after": ["a"]}}}), dispatcher)
    (job,) = dispatcher.drain()
    run_attempt(store, _max_output, job.to_payload(), None, "req")
    success = store.find_status(run_id, "p", "a", "success", 1)
    assert success is not None
    refusing = _RefusingOnce(store)

    outcome = Orchestrator(cast(MongoStore, refusing), dispatcher).handle(_envelope(store, success))

    assert refusing.refused == 1
    assert outcome.recorded == ("workflow_failed",)
    run = store.load_run(run_id)
    assert run is not None
    assert run["status"] == "failed"
    assert run["jobs"]["a"]["state"] == "failed"
    assert "MongoDB refused the write" in run["error"]
    assert dispatcher.drain() == []


def test_a_run_input_too_large_for_a_job_event_is_refused_at_the_start(store: MongoStore) -> None:
    with pytest.raises(Exception, match="the run input is .* bytes of JSON; at most"):
        start_run(store, workflow("w", {"p": {"a": {}}}), input={"blob": "x" * limits.JOB_EVENT_MAX_BYTES})


# -- 4. work after the run ended ----------------------------------------------------------------


def test_an_attempt_delivered_after_the_run_failed_is_recorded_not_run_and_its_code_never_runs(
    store: MongoStore,
) -> None:
    dispatcher = RecordingDispatcher()
    run_id = _started(store, workflow("w", {"p": {"a": {"retries": 0}, "b": {"retries": 0}}}), dispatcher)
    jobs = {job.job: job for job in dispatcher.drain()}
    run_attempt(store, _raise("a fails"), jobs["a"].to_payload(), None, "req-a")
    _deliver(store, dispatcher, run_id, "a", "failed")
    ran: list[str] = []

    result = run_attempt(store, lambda event, context: ran.append("b"), jobs["b"].to_payload(), None, "req-b")

    assert (result.outcome, ran) == ("not-run", [])
    assert "the run had ended (failed) before attempt 1 of 'b' started" in (result.error or "")
    assert _terminals(store, run_id, "b") == ["not_run"]
    assert store.find_status(run_id, "p", "b", "started", 1) is None


def test_a_stale_attempt_is_recorded_not_run(store: MongoStore) -> None:
    dispatcher = RecordingDispatcher()
    run_id = _started(store, workflow("w", {"p": {"a": {"retries": 1}}}), dispatcher)
    (first,) = dispatcher.drain()
    store.record_status(
        StatusEvent(
            run_id=run_id, workflow="w", status=StatusName.FAILED, phase="p", job="a", attempt=1, error="lost"
        )
    )
    _deliver(store, dispatcher, run_id, "a", "failed")
    assert [job.attempt for job in dispatcher.drain()] == [2]
    ran: list[str] = []

    late = run_attempt(store, lambda e, c: ran.append("1"), first.to_payload(), None, "r1")
    result = run_attempt(
        store, lambda e, c: ran.append("3"), {**first.to_payload(), "attempt": 3}, None, "r3"
    )

    assert late.outcome == "already-finished"
    assert (result.outcome, ran) == ("not-run", [])
    assert "attempt 3 of 'a' is stale: the job is dispatched at attempt 2" in (result.error or "")


# -- 5. one terminal report per attempt -----------------------------------------------------------


def test_a_success_and_a_failure_of_the_same_attempt_can_never_both_be_recorded(store: MongoStore) -> None:
    def report(status: StatusName) -> StatusEvent:
        return StatusEvent(run_id="r", workflow="w", status=status, phase="p", job="a", attempt=1, error="e")

    assert store.record_status(report(StatusName.SUCCESS))
    assert not store.record_status(report(StatusName.FAILED))
    assert not store.record_status(report(StatusName.NOT_RUN))
    assert _terminals(store, "r", "a") == ["success"]


def test_an_on_failure_record_racing_the_attempts_success_leaves_one_outcome(store: MongoStore) -> None:
    dispatcher = RecordingDispatcher()
    run_id = _started(store, workflow("dies", {"p": {"a": {"retries": 0}}}), dispatcher)
    (job,) = dispatcher.drain()
    record = {
        "requestContext": {"requestId": "req-1", "condition": "RetriesExhausted"},
        "requestPayload": job.to_payload(),
        "responsePayload": {"errorType": "Error", "errorMessage": "Task timed out"},
    }

    def user(event: dict[str, Any], context: Any) -> dict[str, Any]:
        # Lambda's on-failure record for this very request is handled while the code still runs.
        Orchestrator(store, dispatcher).handle(record)
        return {"ok": True}

    result = run_attempt(store, user, job.to_payload(), None, "req-1")

    assert result.outcome == "superseded"
    assert _terminals(store, run_id, "a") == ["failed"]


# -- 6, 7. a lease instead of a claim that could be taken over ----------------------------------------


def test_a_same_request_redelivery_while_the_code_runs_waits_and_never_runs_it_again(
    store: MongoStore,
) -> None:
    calls: list[float] = []
    payload = {"run_id": "r6", "workflow": "w", "phase": "p", "job": "j", "attempt": 1}

    def slow(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(time.monotonic())
        time.sleep(3 * SHORT.duration.total_seconds())  # several lease lifetimes: renewed meanwhile
        return {"ok": True}

    first = threading.Thread(target=run_attempt, args=(store, slow, payload, None, "same-id", SHORT))
    first.start()
    time.sleep(2 * SHORT.duration.total_seconds())
    duplicate = run_attempt(store, slow, payload, None, "same-id", SHORT)
    first.join()

    assert duplicate.outcome == "already-finished"
    assert len(calls) == 1
    assert _terminals(store, "r6", "j") == ["success"]


def _dead_claimant(store: MongoStore, run_id: str, job: str, expires_in: timedelta) -> None:
    """An invocation took the attempt's lease and died without renewing it."""
    held = Lease(
        lease_id=lease_id(run_id, job, 1),
        owner="dead",
        token="t",
        expires_at=utcnow() + expires_in,
        workflow="w",
    )
    assert store.acquire_lease(held)


def test_a_redelivery_finding_a_live_lease_of_a_dead_claimant_records_the_attempt_failed(
    store: MongoStore,
) -> None:
    dispatcher = RecordingDispatcher()
    run_id = _started(store, workflow("w", {"p": {"a": {"retries": 1}}}), dispatcher)
    (job,) = dispatcher.drain()
    _dead_claimant(store, run_id, "a", SHORT.duration)
    ran: list[str] = []

    result = run_attempt(store, lambda e, c: ran.append("a"), job.to_payload(), None, "redelivery", SHORT)

    assert (result.outcome, ran) == ("lease-expired", [])
    failure = store.find_status(run_id, "p", "a", "failed", 1)
    assert failure is not None
    assert "(request dead) stopped renewing its lease" in failure["error"]
    _deliver(store, dispatcher, run_id, "a", "failed")
    assert [(j.job, j.attempt) for j in dispatcher.drain()] == [("a", 2)]


def test_a_waiting_redelivery_leaves_a_live_lease_to_its_owner_within_its_own_time(store: MongoStore) -> None:
    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 5_500  # half a second to wait, after the margin it keeps

    _dead_claimant(store, "r7", "j", timedelta(minutes=5))
    payload = {"run_id": "r7", "workflow": "w", "phase": "p", "job": "j", "attempt": 1}
    started = time.monotonic()

    result = run_attempt(store, lambda e, c: {"ran": True}, payload, Context(), "other", SHORT)

    assert result.outcome == "left-to-owner"
    assert time.monotonic() - started < 3
    assert _terminals(store, "r7", "j") == []


# -- 8. retries bound executions ---------------------------------------------------------------------


class Killed(BaseException):
    """The invocation dies where it is (a timeout, out of memory): nothing after runs."""


def test_an_invocation_killed_mid_attempt_costs_one_attempt_and_is_never_rerun_for_it(
    store: MongoStore,
) -> None:
    dispatcher = RecordingDispatcher()
    run_id = _started(store, workflow("dies", {"p": {"a": {"retries": 2}}}), dispatcher)
    executions = 0

    def user(event: dict[str, Any], context: Any) -> None:
        nonlocal executions
        executions += 1
        raise Killed

    for attempt in (1, 2, 3):
        (job,) = dispatcher.drain()
        assert job.attempt == attempt
        with pytest.raises(Killed):
            run_attempt(store, user, job.to_payload(), None, f"req-{attempt}", SHORT)
        # The queue delivers the same invocation again: it waits out the dead lease, never reruns.
        duplicate = run_attempt(store, user, job.to_payload(), None, f"req-{attempt}", SHORT)
        assert duplicate.outcome == "lease-expired"
        record = {
            "requestContext": {"requestId": f"req-{attempt}", "condition": "RetriesExhausted"},
            "requestPayload": job.to_payload(),
            "responsePayload": {"errorType": "Sandbox.Timedout", "errorMessage": "killed"},
        }
        assert Orchestrator(store, dispatcher).handle(record).action == "ignored"
        _deliver_attempt(store, dispatcher, run_id, attempt)

    run = store.load_run(run_id)
    assert run is not None
    assert run["status"] == "failed"
    assert executions == 3, "retries: 2 means at most three executions"


def _deliver_attempt(store: MongoStore, dispatcher: RecordingDispatcher, run_id: str, attempt: int) -> None:
    document = store.find_status(run_id, "p", "a", "failed", attempt)
    assert document is not None
    Orchestrator(store, dispatcher).handle(_envelope(store, document))


# -- 9. nesting, big integers, wide phases ----------------------------------------------------------


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "output",
    [
        pytest.param(_nested(97), id="nested-97-deep"),
        pytest.param({"n": 2**53 + 1}, id="integer-past-2-53"),
        pytest.param({"n": [-(2**60)]}, id="negative-integer-in-a-list"),
    ],
)
def test_an_output_the_event_path_would_change_or_refuse_is_kept_by_reference_exactly(
    store: MongoStore, output: Any
) -> None:
    payload = {"run_id": "r9", "workflow": "w", "phase": "p", "job": "j", "attempt": 1}

    result = run_attempt(store, lambda e, c: output, payload, None, "req")

    assert result.outcome == "success"
    status = store.find_status("r9", "p", "j", "success", 1)
    assert status is not None
    assert "output" not in status
    assert store.items().outputs.load(status["outputRef"]) == output


def test_an_output_nested_just_within_the_limit_is_stored_in_the_run_document(store: MongoStore) -> None:
    spec = workflow("w", {"p": {"deep": {}}})
    outcome = Driver(store, spec, handlers={"deep": lambda e, c: _nested(limits.OUTPUT_MAX_DEPTH)}).run()
    assert outcome.run["status"] == "succeeded"


class _SlowDispatcher(RecordingDispatcher):
    """Each invocation takes as long as a real one; counts the most made at the same time, and may
    die at the n-th (the orchestrator's timeout)."""

    def __init__(self, crash_at: int | None = None) -> None:
        super().__init__()
        self.crash_at = crash_at
        self.calls = 0
        self.running = 0
        self.most_at_once = 0
        self._guard = threading.Lock()

    def dispatch(self, event: JobEvent) -> None:
        with self._guard:
            self.calls += 1
            if self.calls == self.crash_at:
                raise InjectedCrash("the orchestrator timed out")
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(INVOKE_SECONDS)
        super().dispatch(event)
        with self._guard:
            self.running -= 1


INVOKE_SECONDS = 0.005


def _wide(jobs: int) -> Workflow:
    return workflow("wide", {"p": {f"j{index:04d}": {} for index in range(jobs)}})


def test_a_phase_of_2000_jobs_is_dispatched_concurrently(store: MongoStore) -> None:
    dispatcher = _SlowDispatcher()
    run_id = start_run(store, _wide(2000)).run_id
    started = store.find_status(run_id, None, None, "workflow_started", 0)
    assert started is not None

    Orchestrator(store, dispatcher, dispatch_threads=32).handle(_envelope(store, started))

    assert len({job.job for job in dispatcher.drain()}) == 2000
    # Concurrency, not a stopwatch: how long the dispatching takes is a benchmark figure, and
    # on a loaded machine a timed assertion fails for reasons that are not the code's.
    assert dispatcher.most_at_once > 8


def test_a_redelivery_after_the_orchestrator_timed_out_does_not_start_the_wide_phase_again(
    store: MongoStore,
) -> None:
    wide = _wide(3 * DISPATCH_BATCH + 50)
    crashing = _SlowDispatcher(crash_at=2 * DISPATCH_BATCH + 50)
    run_id = start_run(store, wide).run_id
    started = store.find_status(run_id, None, None, "workflow_started", 0)
    assert started is not None
    event = _envelope(store, started)
    with pytest.raises(InjectedCrash):
        Orchestrator(store, crashing, dispatch_threads=8).handle(event)
    first = {job.job for job in crashing.drain()}

    again = RecordingDispatcher()
    Orchestrator(store, again, redispatch_after=timedelta(0), dispatch_threads=8).handle(event)
    redispatched = {job.job for job in again.drain()}

    assert len(redispatched) <= len(list(wide.jobs())) - 2 * DISPATCH_BATCH
    assert first | redispatched == {job.name for job in wide.jobs()}
    run = store.read_run(run_id)
    assert run is not None
    assert all(job.state == JobState.DISPATCHED for job in run.jobs.values())
