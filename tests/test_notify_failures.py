"""What ``notify: {on: [failed]}`` tells: a job's final failure only (after its retries), each
failed attempt for ``attempt_failed``, and a summary of a fan-out's failed items. Runs through the
real orchestrator and job wrapper on a real MongoDB server; every ``failed`` report of the run is
then delivered to the notifier (after the run has ended: what it says must not depend on when)."""

from __future__ import annotations

from typing import Any

import pymongo
import pytest

from cdk_app.local.atlas_events import envelope
from runtime.definition.model import Notify, RetryPolicy
from runtime.service.notifier import NotifierService
from runtime.statuses import notified_statuses
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import Driver, workflow


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def publish(self, subject: str, message: str) -> None:
        self.messages.append((subject, message))


def _billing(on: tuple[str, ...]) -> Any:
    return workflow(
        "billing",
        {
            "p": {
                "flaky": {"retries": 1},
                "broken": {"retries": 1, "allow_failure": True},
                "charge": {"for_each": "input.customers", "retries": 0, "tolerated_failures": 1},
            }
        },
        notify=Notify(on=on),
    )


def _handlers() -> dict[str, Any]:
    calls = {"flaky": 0}

    def flaky(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise ConnectionError("the ledger is busy")
        return {}

    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError(f"broken on attempt {event['attempt']}")

    def charge(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["item"] == "acme":
            raise RuntimeError("card declined")
        return {}

    return {"flaky": flaky, "broken": broken, "charge": charge}


def _notified(store: MongoStore, on: tuple[str, ...]) -> list[tuple[str, str]]:
    outcome = Driver(store, _billing(on), handlers=_handlers()).run(
        run_input={"customers": ["globex", "acme", "hooli"]}
    )
    assert outcome.run["status"] == "succeeded"
    inbox = Inbox()
    notifier = NotifierService(notifiers=[inbox], store=store)
    settings = store.settings
    for status in store.run_statuses(outcome.run["_id"]):
        if status["status"] in notified_statuses(on):
            notifier.handle(envelope(status, settings.database, settings.statuses_collection))
    return inbox.messages


def test_failed_notifies_a_jobs_final_failure_only(store: MongoStore) -> None:
    messages = _notified(store, ("failed",))

    assert [subject for subject, _ in messages] == ["billing: job broken failed"]
    assert "failed on attempt 2 of 2; no attempts left, tolerated (allow_failure)" in messages[0][1]


def test_attempt_failed_notifies_every_failed_attempt(store: MongoStore) -> None:
    messages = _notified(store, ("attempt_failed",))

    bodies = sorted(body.split(": ", 1)[1].split(".")[0] for _, body in messages)
    assert bodies == [
        "job broken (phase p) failed on attempt 1 of 2; it will be retried",
        "job broken (phase p) failed on attempt 2 of 2; no attempts left, tolerated (allow_failure): "
        "the run goes on",
        "job flaky (phase p) failed on attempt 1 of 2; it will be retried",
    ]


def test_the_end_of_a_run_summarizes_its_fan_outs_failed_items(store: MongoStore) -> None:
    (succeeded,) = _notified(store, ("workflow_succeeded",))

    assert 'Items of charge that failed: 1 of 3 (item 1 "acme": RuntimeError: card declined).' in succeeded[1]


def test_a_fan_outs_failure_names_its_failed_items(store: MongoStore) -> None:
    spec = workflow(
        "fan",
        {"p": {"charge": {"for_each": "input.customers", "retry": RetryPolicy(max=0)}}},
        notify=Notify(on=("failed",)),
    )

    def charge(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError(f"card declined for {event['item']}")

    outcome = Driver(store, spec, handlers={"charge": charge}).run(
        run_input={"customers": ["acme", "initech"]}
    )
    inbox = Inbox()
    notifier = NotifierService(notifiers=[inbox], store=store)
    for status in store.run_statuses(outcome.run["_id"]):
        if status["status"] == "failed":
            notifier.handle(envelope(status, store.settings.database, store.settings.statuses_collection))

    ((subject, body),) = inbox.messages
    assert subject == "fan: job charge failed"
    assert "Items of charge that failed: " in body
    assert 'item 0 "acme": RuntimeError: card declined for acme' in body
