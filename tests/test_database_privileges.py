"""The custom database roles (constructs/database_access.py, ``privileges``) against what each
class of function really sends, recorded by a command listener on the real server: every
MongoDB command of the job wrapper on its paths (a report, an output kept by reference in
``outputs`` and in GridFS, results read by reference, a lease renewed, a lease found expired, an
attempt found stale, a duplicate delivery), and of the starter, orchestrator, notifier and
reconciler over a whole run with a fan-out, an operation and a repair, is allowed by its class's
role. A missing grant would fail every such call in IAM mode with ``not authorized``. The tables
are the same ones the stacks synthesize (tests/test_database_access.py checks the templates)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pymongo
import pytest
from pymongo import monitoring

from cdk_app.local.atlas_events import envelope
from constructs.database_access import (
    BYPASS_DOCUMENT_VALIDATION,
    COLL_MOD,
    CREATE_COLLECTION,
    CREATE_INDEX,
    DROP_INDEX,
    FIND,
    INSERT,
    LIST_INDEXES,
    REMOVE,
    UPDATE,
    job_privileges,
    privileges,
)
from runtime import limits
from runtime.clock import utcnow
from runtime.definition.model import RunConcurrency
from runtime.documents.children import ParentLink
from runtime.documents.leases import Lease, lease_id
from runtime.documents.views import view_name
from runtime.service.job_attempt import LeaseSettings, run_attempt
from runtime.service.orchestrator import Orchestrator
from runtime.service.run_view import summarize
from runtime.service.runs import start_run
from runtime.statuses import ORCHESTRATOR_STATUSES
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import RecordingDispatcher, workflow

QUICK = LeaseSettings(
    duration=timedelta(seconds=2),
    renew_every=timedelta(milliseconds=50),
    poll_every=timedelta(milliseconds=20),
    longest_wait=timedelta(seconds=3),
)
BIG = {"rows": ["x" * 1000] * (limits.OUTPUT_INLINE_MAX_BYTES // 1000 + 10)}
"""Past what a status event carries: kept by reference."""

IGNORED = {"hello", "ismaster", "isMaster", "ping", "endSessions", "buildInfo", "killCursors"}


class Recorder(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def needed(name: str, command: dict[str, Any]) -> set[tuple[str, str]]:
    """(collection, Atlas action) a command needs, as MongoDB's privilege actions say."""
    collection = command.get("collection") if name == "getMore" else command.get(name)
    actions = {
        "find": {FIND},
        "getMore": {FIND},
        "count": {FIND},
        "aggregate": {FIND},
        "distinct": {FIND},
        "insert": {INSERT}
        | ({BYPASS_DOCUMENT_VALIDATION} if command.get("bypassDocumentValidation") else set()),
        "update": {UPDATE}
        | ({INSERT} if any(u.get("upsert") for u in command.get("updates", ())) else set()),
        "delete": {REMOVE},
        "findAndModify": {FIND} | ({REMOVE} if command.get("remove") else {UPDATE}),
        "listIndexes": {LIST_INDEXES},
        "createIndexes": {CREATE_INDEX},
        "dropIndexes": {DROP_INDEX},
        "create": {CREATE_COLLECTION},
        "collMod": {COLL_MOD},
    }.get(name)
    if actions is None:
        raise AssertionError(f"the job wrapper sent {name!r}, which this test does not know: add it")
    return {(str(collection), action) for action in actions}


@pytest.fixture
def setup(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    """The store as the starter and reconciler use it (they create the indexes and the views)."""
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    store.ensure_views("w")
    return store


@pytest.fixture
def recorded(mongo_uri: str, store_settings: StoreSettings) -> Iterator[tuple[MongoStore, Recorder]]:
    """The store as a job function of workflow ``w`` uses it (reading through its views), every
    command recorded."""
    recorder = Recorder()
    client: pymongo.MongoClient[dict] = pymongo.MongoClient(
        mongo_uri, tz_aware=True, event_listeners=[recorder]
    )
    yield MongoStore(client, store_settings, workflow="w"), recorder
    client.close()


def _deliver(store: MongoStore, dispatcher: RecordingDispatcher, document: dict[str, Any] | None) -> None:
    assert document is not None
    Orchestrator(store, dispatcher).handle(
        envelope(document, store.settings.database, store.settings.statuses_collection)
    )


def _slow(event: dict[str, Any], context: Any) -> dict[str, Any]:
    time.sleep(0.2)  # long enough for the heartbeat to renew the lease
    return BIG


def test_every_command_of_the_job_wrapper_is_granted_by_the_job_database_role(
    setup: MongoStore,
    recorded: tuple[MongoStore, Recorder],
    store_settings: StoreSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_store, recorder = recorded
    dispatcher = RecordingDispatcher()
    spec = workflow("w", {"p": {"a": {}, "g": {}, "b": {"after": ["a", "g"]}}})
    run_id = start_run(setup, spec).run_id
    _deliver(setup, dispatcher, setup.find_status(run_id, None, None, "workflow_started", 0))
    events = {event.job: event for event in dispatcher.drain()}

    # a: an output kept in `outputs`, the lease renewed while the code runs.
    assert run_attempt(job_store, _slow, events["a"].to_payload(), None, "req-a", QUICK).outcome == "success"
    # g: an output past one document, kept in GridFS.
    monkeypatch.setattr(limits, "RUN_DOCUMENT_MAX_BYTES", 1024)
    assert (
        run_attempt(job_store, lambda e, c: BIG, events["g"].to_payload(), None, "req-g", QUICK).outcome
        == "success"
    )
    monkeypatch.undo()
    # A duplicate delivery of a's attempt: it has ended.
    assert (
        run_attempt(job_store, _slow, events["a"].to_payload(), None, "again", QUICK).outcome
        == "already-finished"
    )

    for job in ("a", "g"):
        _deliver(setup, dispatcher, setup.find_status(run_id, "p", job, "success", 1))
    (b,) = dispatcher.drain()
    # b: reads a's and g's outputs by reference.
    seen: list[dict[str, Any]] = []
    assert (
        run_attempt(job_store, lambda e, c: seen.append(e), b.to_payload(), None, "req-b", QUICK).outcome
        == "success"
    )
    assert seen[0]["results"]["a"] == seen[0]["results"]["g"] == BIG

    # A second run: an invocation that finds the claimant's lease expired reports the failure,
    # and a stale attempt is recorded not_run.
    other = start_run(setup, spec, run_id="other").run_id
    _deliver(setup, dispatcher, setup.find_status(other, None, None, "workflow_started", 0))
    waiting = {event.job: event for event in dispatcher.drain()}
    setup.acquire_lease(
        Lease(
            lease_id=lease_id(other, "a", 1, None), owner="dead", token="t", expires_at=utcnow(), workflow="w"
        )
    )
    assert (
        run_attempt(job_store, _slow, waiting["a"].to_payload(), None, "req-w", QUICK).outcome
        == "lease-expired"
    )
    stale = waiting["g"].to_payload() | {"attempt": 2}
    assert run_attempt(job_store, _slow, stale, None, "req-s", QUICK).outcome == "not-run"

    granted = {
        (collection, action)
        for collection, actions in job_privileges(store_settings, "w").items()
        for action in actions
    }
    used = {
        need for name, command in recorder.commands if name not in IGNORED for need in needed(name, command)
    }
    assert used, "nothing was recorded"
    assert used <= granted, f"the job database role lacks {sorted(used - granted)}"
    # Each grant is used by one of these paths, but a job's first lease (the collection's making).
    assert granted - used <= {
        (store_settings.leases_collection, CREATE_COLLECTION),
        (view_name("w", store_settings.items_collection), FIND),
    }, sorted(granted - used)


class ClassStores:
    """One store per class of function, each on a client of its own whose commands are recorded."""

    def __init__(self, mongo_uri: str, settings: StoreSettings) -> None:
        self.recorders = {
            name: Recorder() for name in ("orchestrator", "reconciler", "starter", "notifier", "job")
        }
        self.clients: list[pymongo.MongoClient[dict]] = []
        self.stores: dict[str, MongoStore] = {}
        for name, recorder in self.recorders.items():
            client: pymongo.MongoClient[dict] = pymongo.MongoClient(
                mongo_uri, tz_aware=True, event_listeners=[recorder]
            )
            self.clients.append(client)
            # The job functions of workflow w read through its views.
            self.stores[name] = MongoStore(client, settings, workflow="w" if name == "job" else None)

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def class_stores(mongo_uri: str, store_settings: StoreSettings) -> Iterator[ClassStores]:
    stores = ClassStores(mongo_uri, store_settings)
    yield stores
    stores.close()


def _run_to_end(
    stores: ClassStores, dispatcher: RecordingDispatcher, run_id: str, handlers: dict[str, Any]
) -> None:
    """Every dispatched attempt run by the job wrapper; every status the orchestrator's rule
    matches delivered to the orchestrator once, as the trigger would."""
    orchestrator, job_store = stores.stores["orchestrator"], stores.stores["job"]
    delivered: set[Any] = set()
    while True:
        for event in dispatcher.drain():
            handler = handlers.get(event.job, lambda e, c: {"done": e["job"]})
            payload = event.to_payload()
            assert (
                run_attempt(job_store, handler, payload, None, f"req-{event.job}", QUICK).outcome == "success"
            )
        pending = [
            document
            for document in orchestrator.run_statuses(run_id)
            if document["_id"] not in delivered and document["status"] in ORCHESTRATOR_STATUSES
        ]
        if not pending:
            return
        for document in pending:
            delivered.add(document["_id"])
            _deliver(orchestrator, dispatcher, document)


def test_every_command_of_each_class_of_function_is_granted_by_its_custom_role(
    class_stores: ClassStores, store_settings: StoreSettings
) -> None:
    from runtime.service.notifier import NotifierService
    from runtime.service.operations import list_runs, request_cancel, request_redrive, run_history
    from runtime.service.reconciler import Reconciler
    from runtime.service.timers import fire_due_timers

    stores = class_stores.stores
    # The starter and the reconciler make the indexes and their workflow's views, once per process.
    for maker in ("starter", "reconciler"):
        stores[maker].ensure_indexes()
        stores[maker].ensure_views("w")
    dispatcher = RecordingDispatcher()
    spec = workflow(
        "w",
        {
            "p": {
                "listing": {},
                "each": {"after": ["listing"], "for_each": "results.listing.files"},
                "big": {"after": ["each"]},
                "last": {"after": ["big"]},
            }
        },
    )
    handlers = {"listing": lambda e, c: {"files": [1, 2, 3]}, "big": lambda e, c: BIG}
    run_id = start_run(stores["starter"], spec).run_id
    _run_to_end(class_stores, dispatcher, run_id, handlers)
    assert stores["orchestrator"].read_run(run_id).state == "succeeded"  # type: ignore[union-attr]

    # The notifier tells about the run's end, once.
    ended = stores["orchestrator"].find_status(run_id, None, None, "workflow_succeeded", 0)
    assert ended is not None
    notifier = NotifierService(notifiers=[], store=stores["notifier"], claims=stores["notifier"])
    event = envelope(ended, store_settings.database, store_settings.statuses_collection)
    notifier.handle(event, "n-1")
    notifier.handle(event, "n-2")

    # The starter's operations: a run cancelled, then redriven; the listing and a run's history.
    other = start_run(stores["starter"], spec, run_id="other").run_id
    _deliver(
        stores["orchestrator"],
        dispatcher,
        stores["orchestrator"].find_status(other, None, None, "workflow_started", 0),
    )
    dispatcher.drain()
    request_cancel(stores["starter"], other, "enough")
    _deliver(
        stores["orchestrator"],
        dispatcher,
        stores["orchestrator"].find_status(other, None, None, "cancel_requested", 0),
    )
    request_redrive(stores["starter"], other)
    list_runs(stores["starter"], workflow="w", limit=10)
    run_history(stores["starter"], run_id)
    assert summarize(stores["starter"], run_id) is not None  # the starter's get

    # The reconciler repairs the redriven run, whose request it applies from the statuses, then
    # fires timers.
    reconciler = Reconciler(store=stores["reconciler"], dispatcher=dispatcher, stale_after=timedelta(0))
    report = reconciler.reconcile_pass(utcnow() + timedelta(minutes=5))
    assert other in report.repaired_runs
    fire_due_timers(stores["reconciler"], utcnow(), "w")

    # Run concurrency: the starter admits runs (one starts, one queues, one on_limit: skip ends);
    # the orchestrator's end of the first releases its slot and starts the second.
    limited = replace(spec, concurrency=RunConcurrency(limit=1))
    first = start_run(stores["starter"], limited, run_id="limited-1").run_id
    start_run(stores["starter"], limited, run_id="limited-2")
    start_run(stores["starter"], replace(limited, on_limit="skip"), run_id="limited-3")
    _run_to_end(class_stores, dispatcher, first, handlers)
    assert stores["orchestrator"].read_run("limited-2").state == "running"  # type: ignore[union-attr]
    reconciler.reconcile_pass()

    # A child run whose output is past what a status carries: its orchestrator keeps that output
    # by reference for the parent attempt's report (and the reconciler again, for a lost report).
    parent = ParentLink(run_id="parent", workflow="w", phase="p", job="child", attempt=1)
    child = start_run(stores["starter"], spec, run_id="parent.child.1", parent=parent).run_id
    _run_to_end(class_stores, dispatcher, child, handlers)
    assert stores["orchestrator"].find_status("parent", "p", "child", "success", 1) is not None

    lacking = {}
    tables = privileges(store_settings, ["w"]) | {"job": job_privileges(store_settings, "w")}
    for name, recorder in class_stores.recorders.items():
        granted = {(collection, action) for collection, actions in tables[name].items() for action in actions}
        used = {
            need
            for command, body in recorder.commands
            if command not in IGNORED
            for need in needed(command, body)
        }
        assert used, f"nothing recorded for the {name}"
        if used - granted:
            lacking[name] = sorted(used - granted)
    assert lacking == {}
