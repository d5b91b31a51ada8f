"""Issue 31, item 3: what made a local run's time per item grow with the items already handled,
on the embedded server (SecantusDB), stays out of the local path: its record of every
retryable write (each write scanned it, and sorted it once it held 10,000), and its reads
through a view (each scans the whole collection under the view). benchmarks/README.md
("Fan-out") has the figures and a reproduction of each."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from pymongo import monitoring

from cdk_app.local.embedded_mongo import EmbeddedMongo, plans_reads_through_views
from cdk_app.local.runner import LocalRunner
from runtime.errors import StoreError
from runtime.service.runs import start_run
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from runtime.store.views import workflow_reads
from tests.engine_harness import workflow
from tests.test_job_views import _run_b


class Commands(monitoring.CommandListener):
    """The commands a client sends, as sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self.sent.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture(scope="module")
def embedded() -> Iterator[EmbeddedMongo]:
    """A server of this module's own: what a local run starts when given no MongoDB."""
    server = EmbeddedMongo()
    yield server
    server.stop()


def test_a_client_of_the_embedded_server_makes_no_retryable_writes(embedded: EmbeddedMongo) -> None:
    commands = Commands()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        embedded.uri, event_listeners=[commands]
    )
    try:
        client.db.things.insert_one({"_id": 1})
        client.db.things.update_one({"_id": 1}, {"$set": {"n": 1}})
    finally:
        client.close()
    writes = [command for name, command in commands.sent if name in ("insert", "update")]
    assert len(writes) == 2
    assert [command for command in writes if "txnNumber" in command] == []


def test_the_embedded_server_is_read_without_views_and_a_real_one_through_them(
    embedded: EmbeddedMongo,
) -> None:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(embedded.uri)
    try:
        assert plans_reads_through_views(client) is False
    finally:
        client.close()


def test_a_local_runs_jobs_read_by_id_alone_under_their_workflows_filter(embedded: EmbeddedMongo) -> None:
    commands = Commands()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        embedded.uri, tz_aware=True, event_listeners=[commands]
    )
    spec = workflow("wf_local", {"p": {"a": {}, "each": {"after": ["a"], "for_each": "results.a.items"}}})
    handlers = {"a": lambda event, context: {"items": [1, 2, 3]}, "each": lambda event, context: {"ok": True}}
    try:
        store = MongoStore(client, StoreSettings(database="local_reads"))
        report = LocalRunner(store, spec, handlers, _Quiet()).run()
    finally:
        client.drop_database("local_reads")
        client.close()
    assert report.status == "succeeded", report.error
    finds = [command for name, command in commands.sent if name == "find"]
    assert [command["find"] for command in finds if command["find"].startswith("views.")] == []
    # The jobs' reads (the attempt's in the run, its terminal status) are made...
    point_reads = [command for command in finds if "_id" in command["filter"]]
    assert any(command["filter"]["_id"].endswith("/end") for command in point_reads)
    assert any("jobs.each" in command.get("projection", {}) for command in point_reads)
    # ...by `_id` alone, the only filter the embedded server plans as a primary-key lookup: the
    # workflow's filter is checked on the document read.
    assert [command["filter"] for command in point_reads if set(command["filter"]) != {"_id"}] == []


def test_the_views_filter_sees_what_the_views_see(
    mongo_client: pymongo.MongoClient[dict[str, Any]],
    store_settings: StoreSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    control = MongoStore(mongo_client, store_settings)
    control.ensure_indexes()
    for name in ("wf_a", "wf_b"):
        control.ensure_views(name)
    b_run, b_refs = _run_b(control, monkeypatch)
    start_run(control, workflow("wf_a", {"p": {"a1": {}}}), run_id="run-of-a")

    def reads(store: MongoStore) -> dict[str, Any]:
        return {
            "read_run": store.load_run(b_run),
            "read_attempt_state": store.read_attempt_state(b_run, "big"),
            "find_status": store.find_status(b_run, "p", "big", "success", 1),
            "read_terminal_status": store.read_terminal_status(b_run, "p", "big", 1),
            "run_statuses": store.run_statuses(b_run),
            "count_statuses": store.count_statuses(b_run),
            "find_runs": [run.run_id for run in store.find_runs(None, None, None, 100)],
            "read_lane": store.items().read_lane(b_run, "each", 0),
            "failed_items": store.items().failed_items(b_run, "each", 10),
            "big output": store.items().outputs.load(b_refs["big"]),
        }

    through_views = reads(control.reading_as("wf_b"))
    assert through_views["read_run"] is not None
    assert through_views["find_runs"] == ["run-of-b"]
    assert reads(control.reading_as("wf_b", views=False)) == through_views
    other = control.reading_as("wf_a", views=False)
    assert other.load_run(b_run) is None
    assert other.read_attempt_state(b_run, "big") is None
    assert other.read_terminal_status(b_run, "p", "big", 1) is None
    assert other.read_status_by_id(through_views["read_terminal_status"].terminal_id) is None
    assert other.run_statuses(b_run) == []
    assert other.items().read_lane(b_run, "each", 0) is None
    assert [run.run_id for run in other.find_runs(None, None, None, 100)] == ["run-of-a"]
    with pytest.raises(StoreError, match="is gone"):
        other.items().outputs.load(b_refs["big"])
    # A projection gets the fields it asks for, not the workflow the point read checks.
    projected = [
        workflow_reads(control.database, store_settings.runs_collection, "wf_b", views).find_one(
            {"_id": b_run}, {"status": 1}
        )
        for views in (True, False)
    ]
    assert projected[0] is not None
    assert set(projected[0]) == {"_id", "status"}
    assert projected[1] == projected[0]


class _Quiet:
    def status(self, event: Any) -> None:
        return None

    def notification(self, subject: str, message: str) -> None:
        return None


def test_an_output_kept_by_reference_is_read_from_the_server_once_per_store(mongo_uri: str) -> None:
    """Every item of a fan-out after a listing job gets the listing in its results: at 10,000
    items, kept by reference, the jobs' store read it 10,000 times."""
    commands = Commands()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongo_uri, tz_aware=True, event_listeners=[commands]
    )
    try:
        store = MongoStore(client, StoreSettings(database="kept_outputs"))
        store.ensure_indexes()
        store.ensure_views("wf_kept")
        outputs = store.reading_as("wf_kept").items().outputs
        ref = outputs.store("run-1/listing/1", {"names": ["a", "b"]}, "wf_kept")
        commands.sent.clear()
        first = outputs.load(ref)
        first["names"].append("changed by one handler")
        assert outputs.load(ref) == {"names": ["a", "b"]}, "each reader gets a value of its own"
    finally:
        client.drop_database("kept_outputs")
        client.close()
    assert [name for name, _ in commands.sent if name == "find"] == ["find"]
