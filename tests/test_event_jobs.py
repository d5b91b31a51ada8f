"""Event jobs end to end on the real embedded MongoDB, through the real orchestrator: an event
sent before, while and after the job starts waiting, duplicated and reordered, reaches each
waiting attempt exactly once; ``match``, ``--run``, ``retention``, the timeout and its retries."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pymongo
import pytest

from cdk_app.local.atlas_events import envelope
from cdk_app.local.faults import CrashAtStep, NoCrash
from runtime.clock import utcnow
from runtime.definition.build import workflow_from_document
from runtime.definition.model import EventWait
from runtime.documents.run import StatusEvent, status_from_document
from runtime.documents.sent_events import SentEvent
from runtime.documents.signatures import StatusKeys
from runtime.errors import OperationRefused, RunNotFound, SpecError
from runtime.service.events import send_event
from runtime.service.reconciler import Reconciler
from runtime.service.runs import start_run
from runtime.service.timers import fire_due_timers
from runtime.statuses import JobState, RunState, StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import Driver, Faults, Outcome, workflow
from tests.test_operations import starter_of
from tests.test_status_auth import Cloud


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict[str, Any]], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


ORDER_MATCH = "event.order_id == input.order_id"


def payments(timeout: int = 600, retries: int = 0, retention: int = 3600) -> Any:
    """``pay`` waits for ``payment_settled`` of the run's order, then ``ship`` runs."""
    settled = EventWait(name="payment_settled", match=ORDER_MATCH, timeout=timeout, retention=retention)
    return workflow(
        "shop",
        {"p": {"pay": {"event": settled, "retries": retries}, "ship": {"after": ["pay"]}}},
    )


def start(driver: Driver, run_id: str, order_id: str) -> None:
    start_run(driver.store, driver.definition, run_id=run_id, input={"order_id": order_id})


def received(outcome: Outcome, job: str = "pay") -> int:
    return outcome.count("event_received", job)


@pytest.mark.parametrize(
    "faults",
    [
        Faults(),
        Faults(duplicate=3, shuffle=True, seed=7),
        *(Faults(crash_plan=partial(CrashAtStep, step)) for step in range(1, 5)),
    ],
    ids=["once", "dup", *(f"crash{step}" for step in range(1, 5))],
)
def test_an_event_sent_before_the_run_starts_is_delivered_when_the_job_waits(
    store: MongoStore, faults: Faults
) -> None:
    driver = Driver(store, payments(), faults=faults)
    receipt = send_event(store, "shop", "payment_settled", {"order_id": "o-1", "amount": 5})
    assert receipt.created
    assert receipt.delivered == ()  # nothing waits yet: kept

    start(driver, "r1", "o-1")
    outcome = driver.settle("r1")

    assert outcome.run["status"] == RunState.SUCCEEDED
    assert outcome.run["jobs"]["pay"]["output"] == {"order_id": "o-1", "amount": 5}
    assert received(outcome) == 1
    assert outcome.executions["ship"] == 1
    assert (outcome.crashes > 0) == (faults.crash_plan is not NoCrash)


@pytest.mark.parametrize(
    "faults",
    [
        Faults(),
        Faults(duplicate=2, shuffle=True, seed=3),
        *(Faults(crash_plan=partial(CrashAtStep, step)) for step in range(1, 5)),
    ],
    ids=["once", "dup", *(f"crash{step}" for step in range(1, 5))],
)
def test_an_event_sent_while_the_job_waits_completes_it_once_however_often_it_is_sent(
    store: MongoStore, faults: Faults
) -> None:
    driver = Driver(store, payments(), faults=faults)
    start(driver, "r1", "o-1")
    assert driver.settle("r1").run["jobs"]["pay"]["state"] == JobState.WAITING

    first = send_event(store, "shop", "payment_settled", {"order_id": "o-1"}, event_id="evt-1")
    again = send_event(store, "shop", "payment_settled", {"order_id": "o-1", "late": 1}, event_id="evt-1")
    other = send_event(store, "shop", "payment_settled", {"order_id": "o-1", "second": True})
    outcome = driver.settle("r1")

    assert [len(first.delivered), again.created] == [1, False]
    assert len(other.delivered) == 1  # recorded for the attempt, which takes one event only
    assert received(outcome) == 1
    assert outcome.run["jobs"]["pay"]["output"] == {"order_id": "o-1"}
    assert outcome.run["status"] == RunState.SUCCEEDED
    assert outcome.executions["ship"] == 1


def test_an_event_sent_as_the_wait_begins_is_delivered_once_when_both_sides_see_it(store: MongoStore) -> None:
    """The wait is written, the event is sent (the sender records it for the attempt), and only
    then the orchestrator applies ``event_awaited`` (it finds the kept event and records it for
    the same attempt): one delivery."""
    driver = Driver(store, payments())
    start(driver, "r1", "o-1")
    started = [s for s in store.run_statuses("r1") if s["status"] == "workflow_started"]
    settings = store.settings
    driver.deliver(envelope(started[0], settings.database, settings.statuses_collection))
    awaited = [s for s in store.run_statuses("r1") if s["status"] == "event_awaited"]
    assert len(awaited) == 1  # the wait is written; the orchestrator has not applied it yet

    send_event(store, "shop", "payment_settled", {"order_id": "o-1"})
    driver.deliver(envelope(awaited[0], settings.database, settings.statuses_collection))
    outcome = driver.settle("r1")

    assert received(outcome) == 1
    assert outcome.run["status"] == RunState.SUCCEEDED


def test_only_the_run_whose_match_the_payload_meets_takes_the_event(store: MongoStore) -> None:
    driver = Driver(store, payments())
    for run_id, order in (("r1", "o-1"), ("r2", "o-2")):
        start(driver, run_id, order)
        driver.settle(run_id)

    receipt = send_event(store, "shop", "payment_settled", {"order_id": "o-2"})

    assert [(one.run_id, one.job) for one in receipt.delivered] == [("r2", "pay")]
    assert driver.settle("r2").run["status"] == RunState.SUCCEEDED
    first = driver.settle("r1")
    assert first.run["jobs"]["pay"]["state"] == JobState.WAITING
    assert received(first) == 0


def test_one_event_satisfies_the_waiting_job_of_every_run_it_matches(store: MongoStore) -> None:
    definition = workflow("shop", {"p": {"pay": {"event": EventWait(name="opened", timeout=60)}}})
    driver = Driver(store, definition)
    for run_id in ("r1", "r2"):
        start(driver, run_id, run_id)
        driver.settle(run_id)

    receipt = send_event(store, "shop", "opened", {"at": 9})

    assert sorted(one.run_id for one in receipt.delivered) == ["r1", "r2"]
    for run_id in ("r1", "r2"):
        outcome = driver.settle(run_id)
        assert (outcome.run["status"], received(outcome)) == (RunState.SUCCEEDED, 1)


def test_an_event_sent_to_one_run_reaches_that_run_only(store: MongoStore) -> None:
    definition = workflow("shop", {"p": {"pay": {"event": EventWait(name="opened", timeout=60)}}})
    driver = Driver(store, definition)
    for run_id in ("r1", "r2"):
        start(driver, run_id, run_id)
        driver.settle(run_id)

    send_event(store, "shop", "opened", {}, run_id="r2")
    start(driver, "r3", "r3")  # starts waiting after: the event was not sent to it

    assert driver.settle("r2").run["status"] == RunState.SUCCEEDED
    assert driver.settle("r1").run["jobs"]["pay"]["state"] == JobState.WAITING
    assert driver.settle("r3").run["jobs"]["pay"]["state"] == JobState.WAITING


def test_an_event_kept_longer_than_the_retention_is_not_delivered(store: MongoStore) -> None:
    driver = Driver(store, payments(retention=60))
    old = SentEvent(
        workflow="shop",
        name="payment_settled",
        event_id="old",
        payload={"order_id": "o-1"},
        sent_at=utcnow() - timedelta(seconds=120),
    )
    store.sent_events().keep(old)

    start(driver, "r1", "o-1")
    outcome = driver.settle("r1")

    assert outcome.run["jobs"]["pay"]["state"] == JobState.WAITING
    assert received(outcome) == 0


def test_no_event_in_time_fails_the_job_with_event_timed_out(store: MongoStore) -> None:
    driver = Driver(store, payments(timeout=30))
    start(driver, "r1", "o-1")
    driver.settle("r1")

    assert fire_due_timers(store, utcnow() + timedelta(seconds=31)) == 1
    outcome = driver.settle("r1")
    late = send_event(store, "shop", "payment_settled", {"order_id": "o-1"})

    assert outcome.run["status"] == RunState.FAILED
    assert outcome.run["jobs"]["pay"]["state"] == JobState.FAILED
    assert "event timed out" in outcome.run["error"]
    assert late.delivered == ()  # the attempt has ended: refused after it
    assert received(driver.settle("r1")) == 0


@pytest.mark.parametrize("step", [None, 1, 2, 3, 4], ids=lambda step: f"crash{step}" if step else "once")
def test_a_timed_out_wait_is_retried_and_the_next_attempt_takes_an_event_kept_meanwhile(
    store: MongoStore, step: int | None
) -> None:
    faults = Faults() if step is None else Faults(crash_plan=partial(CrashAtStep, step))
    driver = Driver(store, payments(timeout=30, retries=1), faults=faults)
    start(driver, "r1", "o-1")
    driver.settle("r1")
    send_event(store, "shop", "payment_settled", {"order_id": "o-9"})  # another order's

    fire_due_timers(store, utcnow() + timedelta(seconds=31))
    retried = driver.settle("r1")
    assert retried.run["jobs"]["pay"]["state"] == JobState.WAITING
    assert retried.run["jobs"]["pay"]["attempt"] == 2

    send_event(store, "shop", "payment_settled", {"order_id": "o-1"})
    outcome = driver.settle("r1")

    assert outcome.run["status"] == RunState.SUCCEEDED
    assert [s["attempt"] for s in outcome.statuses if s["status"] == "event_received"] == [2]


def test_a_bad_send_is_refused_before_anything_is_kept(store: MongoStore) -> None:
    driver = Driver(store, payments())
    start(driver, "r1", "o-1")

    with pytest.raises(OperationRefused, match="event name is 1 to 128"):
        send_event(store, "shop", "pay ment", {})
    with pytest.raises(OperationRefused, match="payload of event 'x' is not JSON"):
        send_event(store, "shop", "x", {"n": float("nan")})
    with pytest.raises(RunNotFound, match="no run 'nope'"):
        send_event(store, "shop", "x", {}, run_id="nope")
    with pytest.raises(RunNotFound, match="not 'other'"):
        send_event(store, "other", "x", {}, run_id="r1")
    assert store.sent_events().kept("shop", "x", "r1", utcnow() - timedelta(days=1)) == []


# --- the spec ----------------------------------------------------------------------------------


def _spec(job: dict[str, Any]) -> dict[str, Any]:
    return {"workflow": "shop", "phases": {"p": {"jobs": {"pay": job}}}}


def test_an_event_job_compiles_with_its_default_retention_and_runs_no_code() -> None:
    job = workflow_from_document(
        _spec({"event": {"name": "payment_settled", "match": ORDER_MATCH, "timeout": 600}})
    ).job("pay")

    assert job.event == EventWait(name="payment_settled", match=ORDER_MATCH, timeout=600, retention=86400)
    assert not job.runs_code


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (
            {"event": {"name": "paid", "timeout": 60}, "code": "jobs/pay.py"},
            "$.phases.p.jobs.pay.code: a job that waits for an event runs no 'code'",
        ),
        (
            {"event": {"name": "paid", "timeout": 60}, "for_each": "input.items"},
            "$.phases.p.jobs.pay.for_each: a job that waits for an event runs no 'for_each'",
        ),
        (
            {"event": {"name": "paid", "timeout": 60, "match": "order_id == 'x'"}},
            "reads 'order_id', but 'match' sees only [input, results, event] (did you mean 'event.order_id",
        ),
        (
            {"event": {"name": "paid", "timeout": 60, "match": "event.["}},
            "$.phases.p.jobs.pay.event.match: invalid JMESPath",
        ),
        ({"event": {"name": "paid"}}, "$.phases.p.jobs.pay.event"),
    ],
    ids=["code", "for_each", "root", "jmespath", "timeout"],
)
def test_a_wrong_event_job_says_where_and_what(job: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as raised:
        workflow_from_document(_spec(job))

    assert message in str(raised.value)


# --- the starter function ----------------------------------------------------------------------


def test_the_starter_function_sends_an_event_to_its_workflow_and_answers_a_bad_one_with_an_error(
    store: MongoStore, mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    definition = payments()
    handler = starter_of(definition, store, mongo_uri, tmp_path, monkeypatch)
    driver = Driver(store, definition)
    run_id = handler({"input": {"order_id": "o-1"}})["run_id"]
    driver.settle(run_id)

    answer = handler(
        {"action": "event", "name": "payment_settled", "payload": {"order_id": "o-1"}, "id": "wh-9"}
    )
    again = handler({"action": "event", "name": "payment_settled", "payload": {}, "id": "wh-9"})
    nameless = handler({"action": "event", "payload": {}})

    assert answer == {
        "event_id": "wh-9",
        "created": True,
        "delivered": [{"run_id": run_id, "job": "pay", "attempt": 1}],
    }
    assert again["created"] is False
    assert nameless == {"error": "event needs the name of the event, got None", "error_type": "EventError"}
    assert driver.settle(run_id).run["jobs"]["pay"]["output"] == {"order_id": "o-1"}


# --- trust -------------------------------------------------------------------------------------


def test_an_event_put_on_the_bus_unsigned_or_by_a_jobs_attempt_key_does_not_complete_the_job(
    mongo_client: pymongo.MongoClient[dict[str, Any]], store_settings: StoreSettings
) -> None:
    signed = MongoStore(mongo_client, store_settings, StatusKeys.generate())
    signed.ensure_indexes()
    cloud = Cloud(signed, payments())
    assert cloud.run()["jobs"]["pay"]["state"] == "waiting"
    forged = StatusEvent(
        run_id=cloud.run_id,
        workflow="shop",
        status=StatusName.EVENT_RECEIVED,
        phase="p",
        job="pay",
        attempt=1,
        output={"order_id": None},
    )
    attempt_key = signed.keys.attempt_key(cloud.run_id, "pay", 1, None)  # type: ignore[union-attr]

    assert cloud.deliver(forged).action == "rejected"
    assert cloud.deliver(forged.signed_by_attempt(attempt_key)).action == "rejected"
    assert cloud.run()["jobs"]["pay"]["state"] == "waiting"
    # The operator path signs it: an event sent through it completes the job.
    send_event(signed, "shop", "payment_settled", {"order_id": None}, run_id=cloud.run_id)
    [received] = [s for s in signed.run_statuses(cloud.run_id) if s["status"] == "event_received"]
    assert cloud.deliver(status_from_document(received)).action != "rejected"
    assert cloud.run()["jobs"]["pay"]["state"] == "succeeded"


def test_a_kept_event_whose_delivery_a_crash_lost_is_delivered_by_the_reconciler(store: MongoStore) -> None:
    """The wait was written and ``event_awaited`` recorded, but the handling that would deliver the
    kept event never came (a crash, a suspended trigger): the reconciler's pass delivers it."""
    driver = Driver(store, payments())
    start(driver, "r1", "o-1")
    [started] = [s for s in store.run_statuses("r1") if s["status"] == "workflow_started"]
    driver.deliver(envelope(started, store.settings.database, store.settings.statuses_collection))
    kept = SentEvent(
        workflow="shop", name="payment_settled", event_id="e", payload={"order_id": "o-1"}, sent_at=utcnow()
    )
    store.sent_events().keep(kept)  # sent, its sender's read of the runs came before the wait

    Reconciler(store, driver.dispatcher, stale_after=timedelta(0)).reconcile_pass()
    delivered = [s for s in store.run_statuses("r1") if s["status"] == "event_received"]
    outcome = driver.settle("r1")

    assert [s["requestId"] for s in delivered] == ["e"]

    assert received(outcome) == 1
    assert outcome.run["status"] == RunState.SUCCEEDED


def test_an_event_name_the_sender_could_not_send_is_a_spec_error_saying_what_it_may_be() -> None:
    with pytest.raises(SpecError) as raised:
        workflow_from_document(_spec({"event": {"name": "bad name", "timeout": 60}}))

    assert "$.phases.p.jobs.pay.event.name: invalid value 'bad name': an event name is 1 to 128" in str(
        raised.value
    )
    assert "job name" not in str(raised.value)
