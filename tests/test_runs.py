"""Starting runs: idempotent on the run id, snapshotting the definition."""

from __future__ import annotations

import json
from pathlib import Path

import pymongo
import pytest

from runtime.errors import RunError
from runtime.handlers import starter
from runtime.runs import start_run
from runtime.settings import StoreSettings
from runtime.store import Store
from tests.engine_harness import CATCH_THE_FISH, workflow


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> Store:
    store = Store(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def test_starting_the_same_run_twice_returns_the_existing_run(store: Store) -> None:
    first = start_run(store, CATCH_THE_FISH, run_id="fish-7", input={"lake": "Tahoe"})
    again = start_run(store, CATCH_THE_FISH, run_id="fish-7", input={"lake": "Tahoe"})

    assert (first.created, again.created) == (True, False)
    assert store.runs.count_documents({"_id": "fish-7"}) == 1
    started = [s for s in store.run_statuses("fish-7") if s["status"] == "workflow_started"]
    assert len(started) == 1


def test_the_same_run_id_with_another_input_is_refused(store: Store) -> None:
    start_run(store, CATCH_THE_FISH, run_id="fish-8", input={"lake": "Tahoe"})
    with pytest.raises(RunError, match="already exists with a different input"):
        start_run(store, CATCH_THE_FISH, run_id="fish-8", input={"lake": "Erie"})


def test_a_run_id_taken_by_another_workflow_is_refused(store: Store) -> None:
    start_run(store, CATCH_THE_FISH, run_id="shared-id")
    with pytest.raises(RunError, match="taken by a run of workflow 'catch_the_fish'"):
        start_run(store, workflow("other", {"p": {"j": {}}}), run_id="shared-id")


def test_the_run_document_snapshots_the_definition_and_starts_in_the_first_phase(store: Store) -> None:
    run_id = start_run(store, CATCH_THE_FISH).run_id
    document = store.load_run(run_id)

    assert document is not None
    assert document["definition"] == CATCH_THE_FISH.to_document()
    assert document["phase"] == "thinking"
    assert document["status"] == "running"
    assert run_id.startswith("catch_the_fish-")


def test_a_crash_between_the_two_writes_of_a_start_is_repaired_by_starting_again(store: Store) -> None:
    start_run(store, CATCH_THE_FISH, run_id="fish-9")
    store.statuses.delete_many({"runId": "fish-9"})  # as if the status write never happened

    assert not start_run(store, CATCH_THE_FISH, run_id="fish-9").created
    assert [s["status"] for s in store.run_statuses("fish-9")] == ["workflow_started"]


def test_the_starter_handler_starts_runs_from_the_bundled_definition(
    store: Store, mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "definition.json").write_text(json.dumps(CATCH_THE_FISH.to_document()))
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(tmp_path))
    monkeypatch.setenv("WORKFLOW_DEFINITION_FILE", "definition.json")
    monkeypatch.setenv("MONGODB_URI", mongo_uri)
    monkeypatch.setenv("MONGODB_DATABASE", store.settings.database)
    monkeypatch.setattr(starter, "_state", {})

    assert starter.handler({"run_id": "from-lambda", "input": {"n": 1}}, None) == {
        "run_id": "from-lambda",
        "created": True,
    }
    assert starter.handler({"run_id": "from-lambda", "input": {"n": 1}}, None)["created"] is False
    refused = starter.handler({"run_id": "from-lambda", "input": {"n": 2}}, None)
    assert "different input" in refused["error"]
    assert "must be a non-empty string" in starter.handler({"run_id": 42}, None)["error"]
