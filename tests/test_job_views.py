"""Issue 22, T3 on the server: a job's code reads only its own workflow's documents. The job
function's store (``runtime.handlers.job``, opened from its environment as in Lambda) reads
through its workflow's views (``runtime.documents.views``): every read it offers, given the ids
and references of another workflow's run, statuses, lease, items and outputs, finds nothing;
its own workflow's attempts still run end to end, reading their results by reference."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import gridfs
import pymongo
import pytest

from cdk_app.local.atlas_events import envelope
from constructs.database_access import privileges
from runtime import contracts, limits
from runtime.clock import utcnow
from runtime.documents.leases import lease_id
from runtime.errors import StoreError
from runtime.handlers import job as job_function
from runtime.service.job_attempt import run_attempt
from runtime.service.orchestrator import Orchestrator
from runtime.service.runs import start_run
from runtime.statuses import ORCHESTRATOR_STATUSES
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import RecordingDispatcher, workflow
from tests.test_database_privileges import IGNORED, Recorder, needed

BIG = {"rows": ["x" * 1000] * (limits.OUTPUT_INLINE_MAX_BYTES // 1000 + 10)}
"""Past what a status event carries: kept by reference."""


class Context:
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def control(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    """The store as the starter and reconciler use it: the indexes and both workflows' views."""
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    for name in ("wf_a", "wf_b"):
        if hasattr(store, "ensure_views"):
            store.ensure_views(name)
    return store


@pytest.fixture
def job_store_of(
    mongo_uri: str, store_settings: StoreSettings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """Runs a job function of a workflow as Lambda would (its environment, its handler) and
    answers the store it opened."""

    def open_as(name: str, event: dict[str, Any], user: Any) -> tuple[dict[str, Any], MongoStore]:
        monkeypatch.setenv(contracts.MONGODB_URI, mongo_uri)
        monkeypatch.setenv(contracts.MONGODB_DATABASE, store_settings.database)
        monkeypatch.setenv(contracts.WORKFLOW_NAME, name)
        job_function._state.clear()
        monkeypatch.setattr(job_function, "load_user_handler", lambda spec: user)
        result = job_function.handler(event, Context())
        return result, job_function._state["store"]

    yield open_as
    job_function._state.clear()


def _deliver_all(store: MongoStore, dispatcher: RecordingDispatcher, run_id: str, seen: set[Any]) -> None:
    """Every status the orchestrator's rule matches, delivered once, as the trigger would (the
    statuses the orchestrator itself records on the way too)."""
    while pending := [
        document
        for document in store.run_statuses(run_id)
        if document["_id"] not in seen and document["status"] in ORCHESTRATOR_STATUSES
    ]:
        for document in pending:
            seen.add(document["_id"])
            Orchestrator(store, dispatcher).handle(
                envelope(document, store.settings.database, store.settings.statuses_collection)
            )


def _run_b(
    control: MongoStore, monkeypatch: pytest.MonkeyPatch, last: list[Any] | None = None
) -> tuple[str, dict[str, str]]:
    """A run of workflow wf_b to its end, with an output in ``outputs``, one in GridFS, a
    fan-out's items and the leases of its attempts: its id and the references to its outputs.
    With ``last``, a job after all of them is left dispatched, its event put there: the run is
    in flight."""
    jobs: dict[str, dict[str, Any]] = {
        "listing": {},
        "each": {"after": ["listing"], "for_each": "results.listing.files"},
        "big": {},
        "huge": {},
    }
    if last is not None:
        jobs["last"] = {"after": ["each", "big", "huge"]}
    spec = workflow("wf_b", {"p": jobs})
    handlers = {
        "listing": lambda e, c: {"files": [1, 2, 3]},
        "each": lambda e, c: BIG,
        "big": lambda e, c: BIG,
        "huge": lambda e, c: BIG,
    }
    dispatcher = RecordingDispatcher()
    run_id = start_run(control, spec, run_id="run-of-b").run_id
    seen: set[Any] = set()
    _deliver_all(control, dispatcher, run_id, seen)
    while True:
        events = dispatcher.drain()
        if last is not None:
            last.extend(event for event in events if event.job == "last")
        events = [event for event in events if event.job != "last"]
        if not events:
            break
        for event in events:
            with monkeypatch.context() as patch:
                if event.job == "huge":
                    patch.setattr(limits, "RUN_DOCUMENT_MAX_BYTES", 1024)
                result = run_attempt(control, handlers[event.job], event.to_payload(), None, "req-b")
            assert result.outcome == "success"
        _deliver_all(control, dispatcher, run_id, seen)
    refs = {
        document["job"]: document["outputRef"]
        for document in control.run_statuses(run_id)
        if document["status"] == "success" and "outputRef" in document and "index" not in document
    }
    expected = "succeeded" if last is None else "running"
    assert control.read_run(run_id).state == expected  # type: ignore[union-attr]
    return run_id, refs


def test_a_job_function_reads_nothing_of_another_workflow_and_its_own_attempts_run(
    control: MongoStore, job_store_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    b_run, b_refs = _run_b(control, monkeypatch)
    assert set(b_refs) == {"each", "big", "huge"}
    assert b_refs["huge"].startswith("gridfs:")
    assert b_refs["big"].startswith("output:")
    b_lease = lease_id(b_run, "big", 1)
    assert control.read_lease(b_lease) is not None
    assert control.items().read_item(b_run, "each", 0) == 1

    # Workflow wf_a: a1 keeps its output by reference, a2 reads it, each by its job function.
    spec = workflow("wf_a", {"p": {"a1": {}, "a2": {"after": ["a1"]}}})
    dispatcher = RecordingDispatcher()
    a_run = start_run(control, spec, run_id="run-of-a").run_id
    seen: set[Any] = set()
    _deliver_all(control, dispatcher, a_run, seen)
    (a1,) = dispatcher.drain()
    result, store = job_store_of("wf_a", a1.to_payload(), lambda e, c: BIG)
    assert result["outcome"] == "success", result
    _deliver_all(control, dispatcher, a_run, seen)
    (a2,) = dispatcher.drain()
    given: list[dict[str, Any]] = []
    result, store = job_store_of("wf_a", a2.to_payload(), lambda e, c: given.append(e))
    assert result["outcome"] == "success", result
    assert given[0]["results"]["a1"] == BIG, "a job reads its own workflow's outputs by reference"
    assert store.read_run(a_run) is not None, "and its own workflow's run"

    # Every read the job function's store offers, at wf_b's documents.
    later = utcnow() + timedelta(days=1)
    earlier = datetime(2000, 1, 1, tzinfo=utcnow().tzinfo)
    seen_of_b = {
        "read_run": store.read_run(b_run),
        "load_run": store.load_run(b_run),
        "read_attempt_state": store.read_attempt_state(b_run, "big"),
        "find_status": store.find_status(b_run, "p", "big", "success", 1),
        "read_terminal_status": store.read_terminal_status(b_run, "p", "big", 1),
        "read_statuses": store.read_statuses(b_run),
        "run_statuses": store.run_statuses(b_run),
        "count_statuses": store.count_statuses(b_run),
        "read_operations": [op for op in store.read_operations(earlier) if op.run_id == b_run],
        "find_runs": [run for run in store.find_runs(None, None, None, 100) if run.run_id == b_run],
        "find_runs of wf_b": store.find_runs("wf_b", None, None, 100),
        "stale_runs": [run for run in store.stale_runs(later, 100) if run == b_run],
        "running_deployments": store.running_deployments("wf_b"),
        "read_lease": store.read_lease(b_lease),
        "read_lane": store.items().read_lane(b_run, "each", 0),
        "failed_items": store.items().failed_items(b_run, "each", 10),
    }
    assert {name: value for name, value in seen_of_b.items() if value} == {}
    with pytest.raises(StoreError, match="not stored"):
        store.items().read_item(b_run, "each", 0)
    for job in ("big", "huge"):
        with pytest.raises(StoreError, match="is gone"):
            store.items().outputs.load(b_refs[job])
        with pytest.raises(StoreError, match="is gone"):
            store.items().outputs.load_within(b_refs[job], 10 * limits.OUTPUT_MAX_BYTES)
    # A fan-out's output is its items' outputs: none of them is seen (not even as an empty list).
    with pytest.raises(StoreError, match="is gone"):
        store.items().outputs.load(b_refs["each"])
    with pytest.raises(StoreError, match="is gone"):
        store.items().outputs.load_within(b_refs["each"], 10 * limits.OUTPUT_MAX_BYTES)


def test_an_output_is_inserted_once_and_never_replaced(control: MongoStore) -> None:
    """The job database role may insert outputs, not update them: so no job rewrites another
    workflow's output kept by reference. The same value stored again (a retried write) is fine."""
    outputs = control.items().outputs
    ref = outputs.store("r/j/1", BIG, "wf_a")

    assert outputs.store("r/j/1", BIG, "wf_a") == ref
    with pytest.raises(StoreError, match="stored already, with another value"):
        outputs.store("r/j/1", {"forged": True}, "wf_a")
    assert outputs.load(ref) == BIG


def test_a_run_in_flight_across_the_deploy_has_its_documents_given_their_workflow(
    control: MongoStore, job_store_of: Any, monkeypatch: pytest.MonkeyPatch, mongo_uri: str
) -> None:
    """Outputs and items written before the views carry no workflow, so no job reads them; the
    reconciler's first pass after the deploy gives those of the running runs their workflow
    (``MongoStore.adopt_running_runs``), by the exact ids their statuses name."""
    held: list[Any] = []
    run_id, refs = _run_b(control, monkeypatch, last=held)
    (last,) = held
    # As the version before the views wrote them: no workflow, a GridFS file with its own id.
    database = control.database
    database["items"].update_many({}, {"$unset": {"workflow": ""}})
    database["outputs"].update_many({}, {"$unset": {"workflow": ""}})
    name = refs["huge"].partition(":")[2]
    data = gridfs.GridFSBucket(database, bucket_name="outputs").open_download_stream_by_name(name).read()
    database["outputs.files"].delete_many({})
    database["outputs.chunks"].delete_many({})
    gridfs.GridFSBucket(database, bucket_name="outputs").upload_from_stream(name, data)

    given: list[dict[str, Any]] = []
    result, _ = job_store_of("wf_b", last.to_payload(), lambda e, c: given.append(e))
    assert result["outcome"] == "failed"
    assert "is gone" in result["error"], result

    # The reconciler's adoption, every command of it granted by the reconciler's custom role.
    recorder = Recorder()
    client: pymongo.MongoClient[dict] = pymongo.MongoClient(
        mongo_uri, tz_aware=True, event_listeners=[recorder]
    )
    try:
        reconciler = MongoStore(client, control.settings)
        reconciler.adopt_running_runs("wf_b")
        reconciler.adopt_running_runs("wf_b")  # idempotent
    finally:
        client.close()
    granted = {
        (collection, action)
        for collection, actions in privileges(control.settings, ["wf_b"])["reconciler"].items()
        for action in actions
    }
    used = {need for name, body in recorder.commands if name not in IGNORED for need in needed(name, body)}
    assert used - granted == set()
    retried = replace(last, attempt=2)
    control.apply_transition(run_id, {}, {"jobs.last.attempt": 2, "jobs.last.state": "dispatched"})
    result, _ = job_store_of("wf_b", retried.to_payload(), lambda e, c: given.append(e))
    assert result["outcome"] == "success", result
    assert given[0]["results"] == {"each": [BIG] * 3, "big": BIG, "huge": BIG}
    assert database["items"].count_documents({"workflow": {"$exists": False}}) == 0
