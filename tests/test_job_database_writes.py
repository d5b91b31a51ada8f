"""Issue 22, T3 for what a job's code may write: the database itself refuses an operation (or any
status but a job attempt's report) from the job wrapper's store, and no job can expire or extend
another attempt's lease: the job role may insert leases but not update them, and a renewal
counts only when the attempt's key MAC'd it. The control plane's store writes every status as
before."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pymongo
import pytest

from cdk_app.local.atlas_events import envelope
from cdk_app.local.embedded_mongo import EmbeddedMongo
from constructs.database_access import BYPASS_DOCUMENT_VALIDATION, UPDATE, job_privileges, privileges
from runtime.clock import utcnow
from runtime.documents.events import JobEvent
from runtime.documents.leases import EXPIRES_AT, MAC, RENEWS, TOKEN, Lease, lease_id
from runtime.documents.run import StatusEvent
from runtime.documents.signatures import StatusKeys
from runtime.errors import DocumentRejected
from runtime.service.job_attempt import LeaseSettings, run_attempt
from runtime.service.orchestrator import Orchestrator
from runtime.service.runs import start_run
from runtime.statuses import StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import RecordingDispatcher, workflow
from tests.test_database_privileges import Recorder
from tests.test_engine_faults import EVENT_FIXTURES

SPEC = workflow("w", {"p": {"a": {}, "b": {}}})
QUICK = LeaseSettings(
    duration=timedelta(milliseconds=300),
    renew_every=timedelta(milliseconds=50),
    poll_every=timedelta(milliseconds=20),
    longest_wait=timedelta(seconds=3),
)


@pytest.fixture
def keys() -> StatusKeys:
    return StatusKeys.generate()


@pytest.fixture
def control(
    mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings, keys: StatusKeys
) -> MongoStore:
    """The starter's store: it makes the indexes, the validator and the workflow's views."""
    store = MongoStore(mongo_client, store_settings, keys)
    store.ensure_indexes()
    store.ensure_views("w")
    return store


@pytest.fixture
def job_store(mongo_uri: str, store_settings: StoreSettings) -> Iterator[MongoStore]:
    """What a job function of workflow ``w`` has: no key, reads through its views."""
    client: pymongo.MongoClient[dict] = pymongo.MongoClient(mongo_uri, tz_aware=True)
    yield MongoStore(client, store_settings, workflow="w")
    client.close()


def _dispatched(control: MongoStore) -> tuple[str, dict[str, JobEvent]]:
    dispatcher = RecordingDispatcher()
    run_id = start_run(control, SPEC).run_id
    started = control.find_status(run_id, None, None, "workflow_started", 0)
    assert started is not None
    Orchestrator(control, dispatcher).handle(
        envelope(started, control.settings.database, control.settings.statuses_collection)
    )
    return run_id, {event.job: event for event in dispatcher.drain()}


def test_the_database_refuses_an_operation_or_a_run_status_from_a_jobs_store(
    control: MongoStore, job_store: MongoStore
) -> None:
    run_id, events = _dispatched(control)
    a = events["a"]
    for status in (
        StatusName.CANCEL_REQUESTED,
        StatusName.REDRIVE_REQUESTED,
        StatusName.APPROVED,
        StatusName.TIMER_FIRED,
        StatusName.WORKFLOW_SUCCEEDED,
    ):
        forged = StatusEvent(run_id=run_id, workflow="w", status=status, attempt=1)
        with pytest.raises(DocumentRejected, match="failed validation"):
            job_store.record_status(forged)
    # Nor a job's status without a job or an attempt, which would read as a run's.
    with pytest.raises(DocumentRejected, match="failed validation"):
        job_store.record_status(
            StatusEvent(run_id=run_id, workflow="w", status=StatusName.SUCCESS, attempt=0)
        )
    assert [s["status"] for s in control.run_statuses(run_id)] == ["workflow_started"]

    # Its own attempt's reports go in, through the real job wrapper.
    result = run_attempt(job_store, lambda event, context: {"ok": True}, a.to_payload(), None, "req-a")
    assert result.outcome == "success"
    # The control plane records operations as before.
    assert control.record_status(
        StatusEvent(run_id=run_id, workflow="w", status=StatusName.CANCEL_REQUESTED, attempt=1)
    )
    assert {s["status"] for s in control.run_statuses(run_id)} == {
        "workflow_started",
        "started",
        "success",
        "cancel_requested",
    }


def test_the_roles_say_the_same_the_job_class_holds_no_bypass_and_no_lease_update(
    store_settings: StoreSettings,
) -> None:
    job = job_privileges(store_settings, "w")
    assert all(BYPASS_DOCUMENT_VALIDATION not in actions for actions in job.values())
    assert UPDATE not in job[store_settings.leases_collection]
    for function_class in ("orchestrator", "reconciler", "starter"):
        statuses = privileges(store_settings, ["w"])[function_class][store_settings.statuses_collection]
        assert BYPASS_DOCUMENT_VALIDATION in statuses, function_class


def test_renewals_are_inserts_and_only_the_attempts_own_extend_its_lease(
    control: MongoStore, job_store: MongoStore, keys: StatusKeys
) -> None:
    run_id, events = _dispatched(control)
    a = events["a"]
    assert a.attempt_key is not None
    held = Lease(
        lease_id=lease_id(run_id, "a", 1, None, a.slot),
        owner="req-a",
        token="t-a",
        expires_at=utcnow() + timedelta(seconds=1),
        workflow="w",
    )
    assert job_store.acquire_lease(held)
    later = utcnow() + timedelta(minutes=5)

    # Another job of the workflow reads the lease through its view, and inserts what it may.
    seen = job_store.read_lease(held.lease_id)
    assert seen is not None
    forged = {RENEWS: held.lease_id, TOKEN: seen.token, EXPIRES_AT: later, "workflow": "w"}
    job_store.leases.insert_one(dict(forged))
    job_store.leases.insert_one(forged | {MAC: "0" * 64})
    other_key = keys.attempt_key(run_id, "b", 1, None)
    job_store.renew_lease(replace(held, expires_at=later), other_key)

    for reader in (job_store, control):
        lease = reader.read_lease(held.lease_id, a.attempt_key)
        assert lease is not None
        assert _close(lease.expires_at, held.expires_at)
    # The holder's own renewal counts, read by the attempt's invocations and the control plane.
    job_store.renew_lease(replace(held, expires_at=later), a.attempt_key)
    for reader in (job_store, control):
        lease = reader.read_lease(held.lease_id, a.attempt_key)
        assert lease is not None
        assert _close(lease.expires_at, later)
    # The lease document itself was never written again.
    stored = control.leases.find_one({"_id": held.lease_id})
    assert stored is not None
    assert _close(stored[EXPIRES_AT].replace(tzinfo=UTC), held.expires_at)


def _close(one: datetime, other: datetime) -> bool:
    """Equal to BSON's millisecond."""
    return abs((one - other).total_seconds()) < 0.001


def _keep_alive(job_store: MongoStore, lease: Lease) -> None:
    """Everything the job role's grants on ``leases`` allow, to keep another attempt's lease
    alive: rewriting it where the role may update, inserting renewals without its key."""
    settings = job_store.settings
    grants = job_privileges(settings, "w")[settings.leases_collection]
    far = utcnow() + timedelta(hours=1)
    if UPDATE in grants:
        job_store.leases.update_many({}, {"$set": {EXPIRES_AT: far}})
    job_store.leases.insert_one(
        {RENEWS: lease.lease_id, TOKEN: lease.token, EXPIRES_AT: far, "workflow": "w"}
    )


def test_a_job_cannot_keep_a_dead_attempts_lease_alive(control: MongoStore, job_store: MongoStore) -> None:
    """A claimant died holding its lease; another job's code does all its role allows to keep the
    lease alive. A duplicate delivery still finds the lease expired and reports the attempt
    failed, and Lambda's on-failure record of the dead invocation is not ignored as "another
    invocation holds a live lease"."""
    run_id, events = _dispatched(control)
    for job in ("a", "b"):
        event = events[job]
        dead = Lease(
            lease_id=lease_id(run_id, job, 1, None, event.slot),
            owner=f"dead-{job}",
            token=f"t-{job}",
            expires_at=utcnow() + timedelta(milliseconds=100),
            workflow="w",
        )
        assert job_store.acquire_lease(dead)
        _keep_alive(job_store, dead)
    time.sleep(0.15)
    duplicate = run_attempt(
        job_store, lambda event, context: {}, events["a"].to_payload(), None, "req-2", QUICK
    )
    assert duplicate.outcome == "lease-expired"

    record = json.loads((EVENT_FIXTURES / "lambda-async-on-failure.record.json").read_text())
    record["requestPayload"] = events["b"].to_payload()
    record["requestContext"]["requestId"] = "another-request"
    outcome = Orchestrator(control, RecordingDispatcher()).handle(record)
    assert outcome.action == "recorded", outcome


@pytest.fixture
def failing_server() -> Iterator[str]:
    """A server of this test's own that takes ``configureFailPoint``."""
    server = EmbeddedMongo(test_commands=True)
    try:
        yield server.uri
    finally:
        server.stop()


def test_a_writer_the_server_refuses_the_bypass_writes_without_it_and_sets_no_validator(
    failing_server: str, store_settings: StoreSettings
) -> None:
    """Password mode's ``readWrite`` user (and an operator's CLI signed in as one) holds neither
    ``collMod`` nor ``bypassDocumentValidation``: mongod answers both with code 13, as the
    server is told to here (``failCommand``, for this client alone). The store sets no validator
    and records every operation, the first by trying again without the bypass, the rest without
    trying it."""
    commands = Recorder()
    mongo_client: pymongo.MongoClient[dict] = pymongo.MongoClient(failing_server)
    client: pymongo.MongoClient[dict] = pymongo.MongoClient(
        failing_server, appname="readwrite-user", event_listeners=[commands]
    )
    refuse = {"errorCode": 13, "appName": "readwrite-user"}
    mongo_client.admin.command(
        "configureFailPoint",
        "failCommand",
        mode={"times": 2},
        data=refuse | {"failCommands": ["collMod", "insert"]},
    )
    store = MongoStore(client, store_settings)
    store.ensure_indexes()
    for attempt in (1, 2):
        assert store.record_status(
            StatusEvent(run_id="r", workflow="w", status=StatusName.CANCEL_REQUESTED, attempt=attempt)
        )
    assert [s["attempt"] for s in store.run_statuses("r")] == [1, 2]
    inserts = [body for name, body in commands.commands if name == "insert" and body["insert"] == "statuses"]
    assert [body.get("bypassDocumentValidation", False) for body in inserts] == [True, False, False]
    [options] = [
        c["options"]
        for c in mongo_client[store_settings.database].list_collections(filter={"name": "statuses"})
    ]
    client.close()
    mongo_client.close()
    assert "validator" not in options
