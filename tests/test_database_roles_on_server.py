"""Issue 22, T3 on a server that enforces roles: SecantusDB with authentication on, a user per
class of function holding exactly the custom role the stacks synthesize (``privileges``,
``job_privileges``, their Atlas actions spelled as MongoDB's), and the real store code signed in
as each. The job function's user runs its own attempt (report, lease, renewal) with no action
its role lacks, and the server refuses it what the threat model names: inserting an operation,
changing or deleting a run, changing or deleting a lease; where the server scopes privileges to
collections and enforces ``bypassDocumentValidation`` (mongod, Atlas; each asked of the server),
also bypassing the validator and reading a collection or another workflow's view."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest
from pymongo.errors import OperationFailure

from cdk_app.local.atlas_events import envelope
from cdk_app.local.embedded_mongo import EmbeddedMongo
from constructs.database_access import job_privileges, privileges
from runtime.clock import utcnow
from runtime.documents.run import StatusEvent
from runtime.documents.views import view_name
from runtime.errors import DocumentRejected
from runtime.service.job_attempt import run_attempt
from runtime.service.orchestrator import Orchestrator
from runtime.service.runs import start_run
from runtime.statuses import StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import RecordingDispatcher, workflow

SETTINGS = StoreSettings(database="roles")
PASSWORD = uuid.uuid4().hex
CLASSES = ("orchestrator", "reconciler", "starter", "notifier")


def mongodb_action(atlas_action: str) -> str:
    """``CREATE_INDEX`` -> ``createIndex``: Atlas spells MongoDB's privilege actions so."""
    first, *rest = atlas_action.lower().split("_")
    return first + "".join(word.capitalize() for word in rest)


def _role(grants: dict[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    return [
        {
            "resource": {"db": SETTINGS.database, "collection": collection},
            "actions": [mongodb_action(action) for action in actions],
        }
        for collection, actions in grants.items()
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a server with a user per class of function (and per job role), made on its
    folder before it was started again with authentication on."""
    folder: Path = tmp_path_factory.mktemp("auth")
    setup = EmbeddedMongo(folder)
    try:
        client: pymongo.MongoClient[dict] = pymongo.MongoClient(setup.uri)
        admin = client[SETTINGS.database]
        tables = privileges(SETTINGS, ["w", "other"]) | {
            "job": job_privileges(SETTINGS, "w"),
            "job_of_other": job_privileges(SETTINGS, "other"),
        }
        for name, grants in tables.items():
            admin.command("createRole", name, privileges=_role(grants), roles=[])
            admin.command("createUser", name, pwd=PASSWORD, roles=[name])
        client.close()
    finally:
        setup.stop()
    server = EmbeddedMongo(folder, auth=True)
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture(scope="module")
def clients(server: str) -> Iterator[dict[str, pymongo.MongoClient[dict]]]:
    made: dict[str, pymongo.MongoClient[dict]] = {
        user: pymongo.MongoClient(
            server, username=user, password=PASSWORD, authSource=SETTINGS.database, tz_aware=True
        )
        for user in (*CLASSES, "job", "job_of_other")
    }
    yield made
    for client in made.values():
        client.close()


def _enforces_the_bypass_privilege(clients: dict[str, pymongo.MongoClient[dict]]) -> bool:
    """mongod and Atlas refuse ``bypassDocumentValidation`` to a user without that privilege
    (MongoDB's "Bypass Schema Validation": the user must have the action); SecantusDB 0.7
    checks the user's right to insert but lets any such user bypass. Asked of the server as the
    notifier, which may insert notifications but holds no bypass."""
    notifications = clients["notifier"][SETTINGS.database][SETTINGS.notifications_collection]
    try:
        notifications.insert_one({"probe": True}, bypass_document_validation=True)
    except OperationFailure as exc:
        return "not authorized" in str(exc).lower()
    return False


def _scopes_privileges_to_collections(clients: dict[str, pymongo.MongoClient[dict]]) -> bool:
    """mongod and Atlas grant an action on the collections a privilege names; SecantusDB 0.7 on
    the whole database (so there the job's reads are shown scoped by tests/test_job_views.py, and
    here only the actions it holds nowhere are refused). Asked of the server as the notifier,
    which may read runs and notifications, not statuses."""
    try:
        clients["notifier"][SETTINGS.database][SETTINGS.statuses_collection].find_one()
    except OperationFailure as exc:
        return "not authorized" in str(exc).lower()
    return False


def _refused(call: Any) -> None:
    with pytest.raises(
        (OperationFailure, DocumentRejected), match=re.compile("not authorized|failed validation", re.I)
    ):
        call()


def test_a_job_function_signed_in_as_its_role_may_report_its_attempt_and_nothing_else(
    clients: dict[str, pymongo.MongoClient[dict]],
) -> None:
    starter = MongoStore(clients["starter"], SETTINGS)
    starter.ensure_indexes()
    starter.ensure_views("w")
    starter.ensure_views("other")
    orchestrator = MongoStore(clients["orchestrator"], SETTINGS)
    job = MongoStore(clients["job"], SETTINGS, workflow="w")
    spec = workflow("w", {"p": {"a": {}, "b": {}}})
    run_id = start_run(starter, spec).run_id
    dispatcher = RecordingDispatcher()
    started = orchestrator.find_status(run_id, None, None, "workflow_started", 0)
    assert started is not None
    Orchestrator(orchestrator, dispatcher).handle(
        envelope(started, SETTINGS.database, SETTINGS.statuses_collection)
    )
    events = {event.job: event for event in dispatcher.drain()}

    # Its own attempt runs, reports, holds and renews its lease.
    result = run_attempt(job, lambda event, context: {"ok": True}, events["a"].to_payload(), None, "req-a")
    assert result.outcome == "success"
    assert orchestrator.find_status(run_id, "p", "a", "success", 1) is not None

    database = clients["job"][SETTINGS.database]
    operation = StatusEvent(run_id=run_id, workflow="w", status=StatusName.CANCEL_REQUESTED, attempt=1)
    _refused(lambda: job.record_status(operation))
    if _enforces_the_bypass_privilege(clients):
        _refused(
            lambda: database[SETTINGS.statuses_collection].insert_one(
                operation.to_document(utcnow()), bypass_document_validation=True
            )
        )
    _refused(
        lambda: database[SETTINGS.runs_collection].update_one({"_id": run_id}, {"$set": {"state": "failed"}})
    )
    _refused(lambda: database[SETTINGS.runs_collection].delete_one({"_id": run_id}))
    _refused(lambda: database[SETTINGS.leases_collection].update_many({}, {"$set": {"expiresAt": utcnow()}}))
    _refused(lambda: database[SETTINGS.leases_collection].delete_many({}))
    if _scopes_privileges_to_collections(clients):
        for collection in (
            SETTINGS.runs_collection,
            SETTINGS.statuses_collection,
            SETTINGS.leases_collection,
        ):
            _refused(lambda collection=collection: database[collection].find_one())
        _refused(lambda: database[view_name("other", SETTINGS.runs_collection)].find_one())
    assert database[view_name("w", SETTINGS.runs_collection)].find_one({"_id": run_id}) is not None

    # The operator path, signed in as the starter, still records the operation.
    assert starter.record_status(operation)
