"""Starting runs: idempotent on the run id, snapshotting the definition."""

from __future__ import annotations

import json
from pathlib import Path

import pymongo
import pytest

from cdk_app.local.atlas_events import envelope
from runtime.clock import utcnow
from runtime.definition.input_check import InputRefused
from runtime.definition.loader import workflow_from_document
from runtime.definition.model import Notify
from runtime.documents.run import StatusEvent
from runtime.errors import RunError
from runtime.handlers import job as job_wrapper
from runtime.handlers import starter
from runtime.service.notifier import NotifierService
from runtime.service.runs import start_run
from runtime.statuses import StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import CATCH_THE_FISH, workflow


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def test_starting_the_same_run_twice_returns_the_existing_run(store: MongoStore) -> None:
    first = start_run(store, CATCH_THE_FISH, run_id="fish-7", input={"lake": "Tahoe"})
    again = start_run(store, CATCH_THE_FISH, run_id="fish-7", input={"lake": "Tahoe"})

    assert (first.created, again.created) == (True, False)
    assert store.runs.count_documents({"_id": "fish-7"}) == 1
    started = [s for s in store.run_statuses("fish-7") if s["status"] == "workflow_started"]
    assert len(started) == 1


def test_the_same_run_id_with_another_input_is_refused(store: MongoStore) -> None:
    start_run(store, CATCH_THE_FISH, run_id="fish-8", input={"lake": "Tahoe"})
    with pytest.raises(RunError, match="already exists with a different input"):
        start_run(store, CATCH_THE_FISH, run_id="fish-8", input={"lake": "Erie"})


def test_a_run_id_taken_by_another_workflow_is_refused(store: MongoStore) -> None:
    start_run(store, CATCH_THE_FISH, run_id="shared-id")
    with pytest.raises(RunError, match="taken by a run of workflow 'catch_the_fish'"):
        start_run(store, workflow("other", {"p": {"j": {}}}), run_id="shared-id")


def test_the_run_document_snapshots_the_definition_and_starts_in_the_first_phase(store: MongoStore) -> None:
    run_id = start_run(store, CATCH_THE_FISH).run_id
    document = store.load_run(run_id)

    assert document is not None
    assert document["definition"] == CATCH_THE_FISH.to_document()
    assert document["phase"] == "thinking"
    assert document["status"] == "running"
    assert run_id.startswith("catch_the_fish-")


def test_a_crash_between_the_two_writes_of_a_start_is_repaired_by_starting_again(store: MongoStore) -> None:
    start_run(store, CATCH_THE_FISH, run_id="fish-9")
    store.statuses.delete_many({"runId": "fish-9"})  # as if the status write never happened

    assert not start_run(store, CATCH_THE_FISH, run_id="fish-9").created
    assert [s["status"] for s in store.run_statuses("fish-9")] == ["workflow_started"]


def test_the_starter_handler_starts_runs_from_the_bundled_definition(
    store: MongoStore, mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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


def test_a_job_whose_code_cannot_be_imported_reports_each_attempt_failed_with_the_reason(
    store: MongoStore, mongo_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOB_HANDLER", "no_such_module.handler")
    monkeypatch.setenv("MONGODB_URI", mongo_uri)
    monkeypatch.setenv("MONGODB_DATABASE", store.settings.database)
    monkeypatch.setenv("WORKFLOW_NAME", "w")  # a job function reads through its workflow's views
    store.ensure_views("w")
    monkeypatch.setattr(job_wrapper, "_state", {})
    event = {"run_id": "r", "workflow": "w", "phase": "p", "job": "j", "attempt": 1}

    for attempt in (1, 2):
        assert job_wrapper.handler(event | {"attempt": attempt}, None)["outcome"] == "failed"
        failed = store.find_status("r", "p", "j", "failed", attempt)
        assert failed is not None
        assert "could not load the job handler 'no_such_module.handler'" in failed["error"]
        assert "No module named 'no_such_module'" in failed["error"]


def test_a_failure_notice_says_whether_the_job_will_be_retried(store: MongoStore) -> None:
    # attempt_failed: a notice for every failed attempt, so each wording shows.
    spec = workflow("w", {"p": {"j": {"retries": 1}, "k": {}}}, notify=Notify(on=("attempt_failed",)))
    run_id = start_run(store, spec).run_id
    service = NotifierService(notifiers=[], store=store)

    def notice(attempt: int) -> str:
        event = StatusEvent(
            run_id=run_id,
            workflow="w",
            status=StatusName.FAILED,
            phase="p",
            job="j",
            attempt=attempt,
            error="boom",
        )
        document = event.to_document(utcnow())
        sent = service.handle(envelope(document, store.settings.database, store.settings.statuses_collection))
        assert sent is not None
        return sent[1]

    assert "attempt 1 of 2; it will be retried" in notice(1)
    assert "attempt 2 of 2; no attempts left" in notice(2)
    store.runs.update_one({"_id": run_id}, {"$set": {"status": "failed"}})
    assert "attempt 1 of 2; the run has ended" in notice(1)


def test_the_starter_refuses_an_input_its_schema_does_not_take_with_every_problem_and_writes_nothing(
    store: MongoStore, mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    definition = workflow_from_document(
        {
            "workflow": "orders",
            "input_schema": {
                "type": "object",
                "required": ["order_id"],
                "properties": {"order_id": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
            },
            "phases": {"main": {"jobs": {"ship": {}}}},
        }
    )
    (tmp_path / "definition.json").write_text(json.dumps(definition.to_document()))
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(tmp_path))
    monkeypatch.setenv("WORKFLOW_DEFINITION_FILE", "definition.json")
    monkeypatch.setenv("MONGODB_URI", mongo_uri)
    monkeypatch.setenv("MONGODB_DATABASE", store.settings.database)
    monkeypatch.setattr(starter, "_state", {})

    refused = starter.handler({"run_id": "bad-order", "input": {"quantity": 0}}, None)

    assert refused == {
        "error": "the input does not match the input_schema of workflow 'orders': "
        "$: 'order_id' is a required property; $.quantity: 0 is less than the minimum of 1",
        "error_type": "InputRefused",
        "problems": ["$: 'order_id' is a required property", "$.quantity: 0 is less than the minimum of 1"],
    }
    assert store.runs.count_documents({"_id": "bad-order"}) == 0
    assert store.run_statuses("bad-order") == []
    assert starter.handler({"run_id": "good-order", "input": {"order_id": "o-1"}}, None)["created"] is True


def test_start_run_refuses_an_input_its_schema_does_not_take(store: MongoStore) -> None:
    definition = workflow_from_document(
        {
            "workflow": "typed",
            "input_schema": {"type": "object", "required": ["day"]},
            "phases": {"p": {"jobs": {"j": {}}}},
        }
    )

    with pytest.raises(InputRefused, match=r"\$: 'day' is a required property") as refused:
        start_run(store, definition, run_id="typed-1", input={})

    assert refused.value.problems == ["$: 'day' is a required property"]
    assert store.runs.count_documents({"_id": "typed-1"}) == 0


def test_start_run_refuses_an_input_whose_email_is_not_one(store: MongoStore) -> None:
    definition = workflow_from_document(
        {
            "workflow": "mailing",
            "input_schema": {
                "type": "object",
                "properties": {"reply_to": {"type": "string", "format": "email"}},
            },
            "phases": {"p": {"jobs": {"j": {}}}},
        }
    )

    with pytest.raises(InputRefused) as refused:
        start_run(store, definition, run_id="mailing-1", input={"reply_to": "nobody"})

    assert refused.value.problems == ["$.reply_to: 'nobody' is not a 'email'"]
    assert store.runs.count_documents({"_id": "mailing-1"}) == 0
    assert start_run(store, definition, run_id="mailing-2", input={"reply_to": "a@b.c"}).run_id == "mailing-2"
