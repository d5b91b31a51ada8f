"""Callback jobs end to end on the real embedded MongoDB, through the real orchestrator and job
wrapper: a token completed twice, after its timeout, or for a stale attempt changes nothing the
second time; completions and heartbeats duplicated and reordered; a crash at each write; the
timeout and its retries (a retry gets a new token); tokens that are no tokens, or forged."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pymongo
import pytest

from cdk_app.local.faults import CrashAtStep, NoCrash
from runtime.clock import utcnow
from runtime.definition.build import workflow_from_document
from runtime.definition.model import Callback
from runtime.documents.callbacks import callback_token
from runtime.documents.run import StatusEvent
from runtime.documents.signatures import StatusKeys
from runtime.engine.timers import pending_timers
from runtime.errors import OperationRefused, RunNotFound, SpecError
from runtime.service.callbacks import complete_callback, heartbeat_callback, token_of
from runtime.service.reconciler import Reconciler
from runtime.service.runs import start_run
from runtime.service.timers import fire_due_timers
from runtime.statuses import JobState, RunState, StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import Driver, Faults, Outcome, workflow
from tests.test_status_auth import Cloud

CRASHES = [Faults(crash_plan=partial(CrashAtStep, step)) for step in range(1, 5)]
FAULTS = [Faults(), Faults(duplicate=3, shuffle=True, seed=5), *CRASHES]
FAULT_IDS = ["once", "dup", *(f"crash{step}" for step in range(1, 5))]


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict[str, Any]], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings, StatusKeys.generate())
    store.ensure_indexes()
    return store


def batch(timeout: int = 600, retries: int = 0, runs_code: bool = False) -> Any:
    """``export`` is completed by an outside batch system, then ``publish`` runs."""
    return workflow(
        "reports",
        {
            "p": {
                "export": {"callback": Callback(timeout=timeout, runs_code=runs_code), "retries": retries},
                "publish": {"after": ["export"]},
            }
        },
    )


class Handing:
    """A callback job's code: keeps each attempt's token (as it would hand it out) and returns
    something that must not become the output."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def __call__(self, event: dict[str, Any], context: object) -> Any:
        self.tokens.append(event["callback_token"])
        return {"not": "the output"}


def job(outcome: Outcome, name: str = "export") -> dict[str, Any]:
    return outcome.run["jobs"][name]


def due(outcome: Outcome) -> datetime:
    """When the job's timer fires, as the run document holds it (MongoDB keeps no time zone)."""
    return job(outcome)["dueAt"].replace(tzinfo=UTC)


def completions(outcome: Outcome) -> int:
    return outcome.count(StatusName.CALLBACK_COMPLETED, "export")


def waiting_token(store: MongoStore, run_id: str) -> str:
    run = store.read_run(run_id)
    assert run is not None
    token = token_of(store, run, run.definition.job("export"))
    assert token is not None
    return token


# --- without code: the job waits at once, operators see the token -------------------------------


@pytest.mark.parametrize("faults", FAULTS, ids=FAULT_IDS)
def test_a_token_completed_twice_completes_the_job_once(store: MongoStore, faults: Faults) -> None:
    driver = Driver(store, batch(), faults=faults)
    start_run(store, driver.definition, run_id="r1")
    assert job(driver.settle("r1"))["state"] == JobState.WAITING
    token = waiting_token(store, "r1")

    first = complete_callback(store, token, output={"rows": 3}, completion_id="c-1")
    again = complete_callback(store, token, output={"rows": 4}, completion_id="c-1")
    with pytest.raises(OperationRefused, match="completed already, by completion c-1"):
        complete_callback(store, token, error="late", completion_id="c-2")
    outcome = driver.settle("r1")

    assert [first.created, again.created] == [True, False]
    assert outcome.run["status"] == RunState.SUCCEEDED
    assert job(outcome)["output"] == {"rows": 3}
    assert completions(outcome) == 1
    assert outcome.executions["publish"] == 1
    assert (outcome.crashes > 0) == (faults.crash_plan is not NoCrash)
    # Applied: the same completion again is still a receipt, any other is refused.
    assert complete_callback(store, token, output={"rows": 3}, completion_id="c-1").created is False
    with pytest.raises(
        OperationRefused, match=r"run r1 has ended \(succeeded\): its callback tokens are refused"
    ):
        complete_callback(store, token, output={"rows": 5})


@pytest.mark.parametrize("faults", FAULTS, ids=FAULT_IDS)
def test_a_completion_after_the_timeout_changes_nothing(store: MongoStore, faults: Faults) -> None:
    driver = Driver(store, batch(timeout=30), faults=faults)
    start_run(store, driver.definition, run_id="r1")
    driver.settle("r1")
    token = waiting_token(store, "r1")

    fire_due_timers(store, utcnow() + timedelta(seconds=31))
    timed_out = driver.settle("r1")
    assert timed_out.run["status"] == RunState.FAILED
    assert "callback timed out" in timed_out.run["error"]

    with pytest.raises(OperationRefused, match="has ended"):
        complete_callback(store, token, output={"rows": 3})
    assert completions(driver.settle("r1")) == 0


@pytest.mark.parametrize("faults", [Faults(), *CRASHES], ids=["once", *FAULT_IDS[2:]])
def test_a_timed_out_attempt_is_retried_with_a_new_token_and_the_stale_one_is_refused(
    store: MongoStore, faults: Faults
) -> None:
    driver = Driver(store, batch(timeout=30, retries=1), faults=faults)
    start_run(store, driver.definition, run_id="r1")
    driver.settle("r1")
    stale = waiting_token(store, "r1")

    fire_due_timers(store, utcnow() + timedelta(seconds=31))
    retried = driver.settle("r1")
    assert (job(retried)["state"], job(retried)["attempt"]) == (JobState.WAITING, 2)
    fresh = waiting_token(store, "r1")
    assert fresh != stale

    with pytest.raises(OperationRefused, match="attempt 1 .* which has ended"):
        complete_callback(store, stale, output="old")
    complete_callback(store, fresh, output="new")
    outcome = driver.settle("r1")

    assert outcome.run["status"] == RunState.SUCCEEDED
    assert job(outcome)["output"] == "new"
    assert [s["attempt"] for s in outcome.statuses if s["status"] == "callback_completed"] == [2]


def test_a_stale_attempts_completion_recorded_anyway_changes_nothing(store: MongoStore) -> None:
    """The refusal before recording is a courtesy: a completion of attempt 1 recorded after the
    retry (a sender that read the run before it) is ignored when applied."""
    driver = Driver(store, batch(timeout=30, retries=1))
    start_run(store, driver.definition, run_id="r1")
    driver.settle("r1")
    fire_due_timers(store, utcnow() + timedelta(seconds=31))
    driver.settle("r1")

    store.record_status(
        StatusEvent(
            run_id="r1",
            workflow="reports",
            status=StatusName.CALLBACK_COMPLETED,
            phase="p",
            job="export",
            attempt=1,
            output="stale",
        )
    )
    outcome = driver.settle("r1")

    assert (job(outcome)["state"], job(outcome)["attempt"]) == (JobState.WAITING, 2)
    assert job(outcome).get("output") is None


@pytest.mark.parametrize("faults", FAULTS, ids=FAULT_IDS)
def test_a_completion_with_an_error_fails_the_attempt_and_the_retry_rules_apply(
    store: MongoStore, faults: Faults
) -> None:
    driver = Driver(store, batch(retries=1), faults=faults)
    start_run(store, driver.definition, run_id="r1")
    driver.settle("r1")

    complete_callback(store, waiting_token(store, "r1"), error="the batch system lost the file")
    retried = driver.settle("r1")
    assert (job(retried)["state"], job(retried)["attempt"]) == (JobState.WAITING, 2)
    assert job(retried)["error"] == "callback failed: the batch system lost the file"

    complete_callback(store, waiting_token(store, "r1"), error="again")
    outcome = driver.settle("r1")

    assert outcome.run["status"] == RunState.FAILED
    assert "failed after 2 attempt(s): callback failed: again" in outcome.run["error"]
    assert outcome.executions["publish"] == 0


# --- heartbeats --------------------------------------------------------------------------------


@pytest.mark.parametrize("faults", FAULTS, ids=FAULT_IDS)
def test_a_heartbeat_extends_the_timeout_and_a_repeated_one_does_not_shorten_it(
    store: MongoStore, faults: Faults
) -> None:
    driver = Driver(store, batch(timeout=60), faults=faults)
    start_run(store, driver.definition, run_id="r1")
    waiting = driver.settle("r1")
    first_due = due(waiting)
    token = waiting_token(store, "r1")

    time.sleep(0.05)  # the heartbeat comes later than the wait began (dates are in milliseconds)
    heartbeat_callback(store, token, heartbeat_id="h-1")
    heartbeat_callback(store, token, heartbeat_id="h-1")  # the same heartbeat: one status
    beaten = driver.settle("r1")
    assert beaten.count(StatusName.CALLBACK_HEARTBEAT, "export") == 1
    assert due(beaten) - first_due >= timedelta(milliseconds=50)

    # Past the old due time, before the new one: nothing fires.
    fire_due_timers(store, first_due + (due(beaten) - first_due) / 2)
    assert job(driver.settle("r1"))["state"] == JobState.WAITING

    fire_due_timers(store, due(beaten) + timedelta(seconds=1))
    outcome = driver.settle("r1")
    assert outcome.run["status"] == RunState.FAILED
    assert "callback timed out" in outcome.run["error"]


def test_a_timer_fired_for_a_due_time_a_heartbeat_moved_on_is_ignored_and_the_new_one_fires(
    store: MongoStore,
) -> None:
    """The sweep read the run before the heartbeat was applied and fired the old due time: that
    timer is ignored, and the new due time's timer is a status of its own, which fires later."""
    driver = Driver(store, batch(timeout=60))
    start_run(store, driver.definition, run_id="r1")
    first_due = due(driver.settle("r1"))
    stale_view = store.read_run("r1")
    assert stale_view is not None
    heartbeat_callback(store, waiting_token(store, "r1"))
    moved = driver.settle("r1")

    [(fired_for, timer)] = pending_timers(stale_view)
    store.record_status(timer)  # the sweep's late insert for the old due time
    assert job(driver.settle("r1"))["state"] == JobState.WAITING

    fire_due_timers(store, due(moved) + timedelta(seconds=1))
    outcome = driver.settle("r1")
    assert fired_for == first_due
    assert outcome.count(StatusName.TIMER_FIRED, "export") == 2
    assert "callback timed out" in outcome.run["error"]


def test_a_heartbeat_delivered_after_the_completion_changes_nothing(store: MongoStore) -> None:
    """Reordered: the heartbeat is recorded before the completion but applied after it."""
    driver = Driver(store, batch(), faults=Faults(shuffle=True, seed=1))
    start_run(store, driver.definition, run_id="r1")
    driver.settle("r1")
    token = waiting_token(store, "r1")

    heartbeat_callback(store, token)
    complete_callback(store, token, output={"rows": 1})
    outcome = driver.settle("r1")

    assert outcome.run["status"] == RunState.SUCCEEDED
    assert job(outcome)["output"] == {"rows": 1}
    with pytest.raises(OperationRefused, match="has ended"):
        heartbeat_callback(store, token)


# --- with code: the code gets the token and hands it out ------------------------------------------


@pytest.mark.parametrize("faults", FAULTS, ids=FAULT_IDS)
def test_the_code_gets_its_attempts_token_and_its_return_value_is_not_the_output(
    store: MongoStore, faults: Faults
) -> None:
    handing = Handing()
    driver = Driver(store, batch(runs_code=True), handlers={"export": handing}, faults=faults)
    start_run(store, driver.definition, run_id="r1")
    waiting = driver.settle("r1")
    assert job(waiting)["state"] == JobState.WAITING
    assert job(waiting).get("output") is None
    assert token_of(store, store.read_run("r1"), driver.definition.job("export")) is None  # type: ignore[arg-type]

    complete_callback(store, handing.tokens[0], output={"rows": 7})
    outcome = driver.settle("r1")

    assert set(handing.tokens) == {callback_token(store.keys, "reports", "r1", "export", 1)}  # type: ignore[arg-type]
    assert outcome.run["status"] == RunState.SUCCEEDED
    assert job(outcome)["output"] == {"rows": 7}
    assert outcome.executions["publish"] == 1


def test_a_completion_before_the_code_returns_completes_the_job_and_the_return_changes_nothing(
    store: MongoStore,
) -> None:
    def answered_at_once(event: dict[str, Any], context: object) -> Any:
        complete_callback(store, event["callback_token"], output="fast")
        return "returned"

    driver = Driver(store, batch(runs_code=True), handlers={"export": answered_at_once})
    outcome = driver.run("r1")

    assert outcome.run["status"] == RunState.SUCCEEDED
    assert job(outcome)["output"] == "fast"
    assert outcome.executions["publish"] == 1


def test_a_failed_completion_reruns_the_code_with_a_new_token(store: MongoStore) -> None:
    handing = Handing()
    driver = Driver(store, batch(retries=1, runs_code=True), handlers={"export": handing})
    driver.run("r1")

    complete_callback(store, handing.tokens[0], error="rejected by the batch system")
    driver.settle("r1")
    assert len(handing.tokens) == 2
    assert handing.tokens[0] != handing.tokens[1]
    with pytest.raises(OperationRefused, match="has ended"):
        complete_callback(store, handing.tokens[0], output="stale")
    complete_callback(store, handing.tokens[1], output="second")
    outcome = driver.settle("r1")

    assert outcome.executions["export"] == 2
    assert job(outcome)["output"] == "second"


def test_a_heartbeat_while_the_code_runs_is_refused(store: MongoStore) -> None:
    refusals: list[str] = []

    def beats(event: dict[str, Any], context: object) -> Any:
        with pytest.raises(OperationRefused) as refused:
            heartbeat_callback(store, event["callback_token"])
        refusals.append(str(refused.value))

    Driver(store, batch(runs_code=True), handlers={"export": beats}).run("r1")
    assert refusals
    assert "still runs its code" in refusals[0]


# --- repairs, trust, bad tokens --------------------------------------------------------------------


def test_a_completion_whose_delivery_was_lost_is_applied_by_the_reconciler(store: MongoStore) -> None:
    driver = Driver(store, batch())
    start_run(store, driver.definition, run_id="r1")
    driver.settle("r1")
    complete_callback(store, waiting_token(store, "r1"), output={"rows": 2})

    Reconciler(store, driver.dispatcher, stale_after=timedelta(0)).reconcile_pass()
    run = store.load_run("r1")

    assert run is not None
    assert run["jobs"]["export"]["state"] == JobState.SUCCEEDED


def test_a_completion_signed_with_the_attempts_key_or_unsigned_is_rejected(store: MongoStore) -> None:
    cloud = Cloud(store, batch())
    assert cloud.run()["jobs"]["export"]["state"] == "waiting"
    forged = StatusEvent(
        run_id=cloud.run_id,
        workflow="reports",
        status=StatusName.CALLBACK_COMPLETED,
        phase="p",
        job="export",
        attempt=1,
        output="forged",
    )
    attempt_key = store.keys.attempt_key(cloud.run_id, "export", 1, None)  # type: ignore[union-attr]

    assert cloud.deliver(forged).action == "rejected"
    assert cloud.deliver(forged.signed_by_attempt(attempt_key)).action == "rejected"
    assert cloud.run()["jobs"]["export"]["state"] == "waiting"


def test_tokens_that_are_no_tokens_or_forged_are_refused_before_anything_is_recorded(
    store: MongoStore, mongo_client: pymongo.MongoClient[dict[str, Any]], store_settings: StoreSettings
) -> None:
    driver = Driver(store, batch())
    start_run(store, driver.definition, run_id="r1")
    driver.settle("r1")
    token = waiting_token(store, "r1")
    other_key = callback_token(StatusKeys.generate(), "reports", "r1", "export", 1)

    with pytest.raises(OperationRefused, match="shape cb1"):
        complete_callback(store, "hello", output=1)
    with pytest.raises(OperationRefused, match="does not decode"):
        complete_callback(store, "cb1.!!!.x", output=1)
    with pytest.raises(OperationRefused, match="not authentic"):
        complete_callback(store, other_key, output=1)
    with pytest.raises(OperationRefused, match="not authentic"):
        complete_callback(store, token[:-2] + ("AA" if not token.endswith("AA") else "BB"), output=1)
    with pytest.raises(RunNotFound, match="not 'other'"):
        complete_callback(store, token, output=1, workflow="other")
    with pytest.raises(OperationRefused, match="not JSON"):
        complete_callback(store, token, output={"n": float("nan")})
    with pytest.raises(OperationRefused, match="none is set"):
        complete_callback(MongoStore(mongo_client, store_settings), token, output=1)
    assert completions(driver.settle("r1")) == 0


def test_a_callback_with_a_key_of_another_kind_is_a_spec_error_saying_where() -> None:
    spec = {
        "workflow": "reports",
        "phases": {"p": {"jobs": {"export": {"callback": {"timeout": 60}, "wait": 5}}}},
    }
    with pytest.raises(SpecError) as raised:
        workflow_from_document(spec)
    assert "$.phases.p.jobs.export.wait: a job completed by a callback token has no 'wait'" in str(
        raised.value
    )


def test_the_spec_keeps_whether_the_code_runs_first() -> None:
    without = workflow_from_document(
        {"workflow": "reports", "phases": {"p": {"jobs": {"export": {"callback": {"timeout": 60}}}}}}
    )
    assert without.job("export").callback == Callback(timeout=60, runs_code=False)
    assert not without.job("export").runs_code


def test_a_callback_job_with_code_gives_its_workflow_the_timer_schedule() -> None:
    """Its timeout is a timer, though its code runs: without the schedule it would never fire."""
    assert batch(runs_code=True).uses_timers
