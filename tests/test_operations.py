"""Operations on runs (runtime/service/operations.py) against a real MongoDB server: what a request
records and what it refuses, listings, history and waiting. What the engine then does with a
request is in tests/test_engine_operations.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymongo
import pytest

from runtime.definition.model import Workflow
from runtime.errors import RunError
from runtime.handlers import starter
from runtime.service.operations import list_runs, request_cancel, request_redrive, run_history, wait_for_end
from runtime.service.runs import start_run
from runtime.statuses import RunState
from runtime.store.mongo import RUN_INDEXES, STATUS_INDEXES, MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import CATCH_THE_FISH, workflow


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def _end(store: MongoStore, run_id: str, state: RunState, **fields: object) -> None:
    """Set-up only: put a run in ``state`` as the engine would leave it."""
    store.runs.update_one({"_id": run_id}, {"$set": {"status": state.value, **fields}})


def test_a_cancel_is_recorded_once_with_its_reason(store: MongoStore) -> None:
    run_id = start_run(store, CATCH_THE_FISH, run_id="fish-1").run_id

    first = request_cancel(store, run_id, reason="wrong lake")
    again = request_cancel(store, run_id, reason="still the wrong lake")

    assert (first.operation, first.sequence, first.created) == ("cancel_requested", 0, True)
    assert (again.sequence, again.created) == (0, False)
    [cancel] = [s for s in store.run_statuses(run_id) if s["status"] == "cancel_requested"]
    assert (cancel["job"], cancel["phase"], cancel["attempt"], cancel["reason"]) == (
        None,
        None,
        0,
        "wrong lake",
    )


def test_a_cancel_after_a_redrive_is_a_request_of_its_own(store: MongoStore) -> None:
    run_id = start_run(store, CATCH_THE_FISH, run_id="fish-2").run_id
    request_cancel(store, run_id)
    store.runs.update_one({"_id": run_id}, {"$set": {"redrives": 1}})

    receipt = request_cancel(store, run_id)

    assert (receipt.sequence, receipt.created) == (1, True)


@pytest.mark.parametrize("state", [RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED], ids=str)
def test_cancelling_an_ended_run_is_refused_with_its_state(store: MongoStore, state: RunState) -> None:
    run_id = start_run(store, CATCH_THE_FISH).run_id
    _end(store, run_id, state)

    with pytest.raises(RunError, match=rf"^run {run_id} has already ended \({state}\): nothing to cancel$"):
        request_cancel(store, run_id)


@pytest.mark.parametrize(
    "request_operation", [request_cancel, request_redrive, run_history], ids=lambda f: f.__name__
)
def test_an_operation_on_an_unknown_run_says_so(store: MongoStore, request_operation: object) -> None:
    with pytest.raises(RunError, match="no run 'nope' in this database"):
        request_operation(store, "nope")  # type: ignore[operator]


def test_a_redrive_of_a_failed_run_is_numbered_after_the_redrives_before_it(store: MongoStore) -> None:
    run_id = start_run(store, CATCH_THE_FISH).run_id
    _end(store, run_id, RunState.FAILED)

    first = request_redrive(store, run_id)
    again = request_redrive(store, run_id)
    store.runs.update_one({"_id": run_id}, {"$set": {"redrives": 1}})
    second = request_redrive(store, run_id)

    assert [(r.operation, r.sequence, r.created) for r in (first, again, second)] == [
        ("redrive_requested", 1, True),
        ("redrive_requested", 1, False),
        ("redrive_requested", 2, True),
    ]


def test_a_cancelled_run_can_be_redriven(store: MongoStore) -> None:
    run_id = start_run(store, CATCH_THE_FISH).run_id
    _end(store, run_id, RunState.CANCELLED)

    assert request_redrive(store, run_id).created


def test_redriving_a_running_or_succeeded_run_is_refused(store: MongoStore) -> None:
    running = start_run(store, CATCH_THE_FISH, run_id="running-1").run_id
    succeeded = start_run(store, CATCH_THE_FISH, run_id="done-1").run_id
    _end(store, succeeded, RunState.SUCCEEDED)

    with pytest.raises(RunError, match="^run running-1 is running: only a failed or cancelled run can be"):
        request_redrive(store, running)
    with pytest.raises(RunError, match="^run done-1 has succeeded: only a failed or cancelled run can be"):
        request_redrive(store, succeeded)
    assert not [s for s in store.statuses.find({"status": "redrive_requested"})]


def test_runs_are_listed_newest_first_with_filters(store: MongoStore) -> None:
    other = workflow("other", {"p": {"j": {}}})
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for index, (definition, state) in enumerate(
        [
            (CATCH_THE_FISH, RunState.SUCCEEDED),
            (other, RunState.FAILED),
            (CATCH_THE_FISH, RunState.FAILED),
            (CATCH_THE_FISH, RunState.RUNNING),
        ]
    ):
        run_id = start_run(store, definition, run_id=f"r{index}").run_id
        _end(store, run_id, state, createdAt=base + timedelta(hours=index), error=f"e{index}")

    def ids(**filters: object) -> list[str]:
        return [summary.run_id for summary in list_runs(store, **filters)]  # type: ignore[arg-type]

    assert ids() == ["r3", "r2", "r1", "r0"]
    assert ids(workflow="catch_the_fish") == ["r3", "r2", "r0"]
    assert ids(status="failed") == ["r2", "r1"]
    assert ids(workflow="catch_the_fish", status="failed") == ["r2"]
    assert ids(since=base + timedelta(hours=2)) == ["r3", "r2"]
    assert ids(limit=1) == ["r3"]
    [summary] = list_runs(store, workflow="other")
    assert (summary.workflow, summary.status, summary.phase, summary.error) == ("other", "failed", "p", "e1")
    assert summary.created_at == base + timedelta(hours=1)
    assert summary.updated_at is not None


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"status": "done"}, "unknown run status 'done': use one of queued, running, "),
        ({"limit": 0}, "at least 1"),
    ],
)
def test_a_listing_with_a_bad_filter_says_what_would_be_right(
    store: MongoStore, filters: dict[str, object], message: str
) -> None:
    with pytest.raises(RunError, match=message):
        list_runs(store, **filters)  # type: ignore[arg-type]


def test_the_listing_and_reconciler_indexes_exist(store: MongoStore) -> None:
    assert set(RUN_INDEXES) <= {index["name"] for index in store.runs.list_indexes()}
    assert set(STATUS_INDEXES) <= {index["name"] for index in store.statuses.list_indexes()}


def test_the_history_holds_every_status_in_order_operations_included(store: MongoStore) -> None:
    run_id = start_run(store, CATCH_THE_FISH).run_id
    request_cancel(store, run_id, reason="rain")

    history = run_history(store, run_id)

    assert [(entry.status, entry.job, entry.attempt, entry.reason) for entry in history] == [
        ("workflow_started", None, 0, None),
        ("cancel_requested", None, 0, "rain"),
    ]
    assert all(entry.date is not None for entry in history)


def test_waiting_returns_the_run_once_it_ends_and_none_when_time_runs_out(store: MongoStore) -> None:
    run_id = start_run(store, CATCH_THE_FISH).run_id

    started = time.monotonic()
    assert wait_for_end(store, run_id, timeout=0.2, poll=0.05) is None
    assert time.monotonic() - started >= 0.2

    timer = threading.Timer(0.2, lambda: _end(store, run_id, RunState.SUCCEEDED))
    timer.start()
    try:
        ended = wait_for_end(store, run_id, timeout=10, poll=0.05)
    finally:
        timer.join()
    assert ended is not None
    assert ended.state == RunState.SUCCEEDED


def starter_of(
    definition: Workflow, store: MongoStore, mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[object], dict[str, Any]]:
    """The starter function of ``definition``, as Lambda runs it (its bundled definition file and
    its environment), on ``store``."""
    (tmp_path / "definition.json").write_text(json.dumps(definition.to_document()))
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(tmp_path))
    monkeypatch.setenv("WORKFLOW_DEFINITION_FILE", "definition.json")
    monkeypatch.setenv("MONGODB_URI", mongo_uri)
    monkeypatch.setenv("MONGODB_DATABASE", store.settings.database)
    monkeypatch.setattr(starter, "_state", {})
    return lambda event: starter.handler(event, None)  # type: ignore[arg-type]


@pytest.fixture
def starter_handler(
    store: MongoStore, mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[object], dict[str, Any]]:
    """The starter function of catch_the_fish."""
    return starter_of(CATCH_THE_FISH, store, mongo_uri, tmp_path, monkeypatch)


def test_the_starter_function_cancels_and_redrives_runs(
    store: MongoStore, starter_handler: Callable[[object], dict[str, Any]]
) -> None:
    start_run(store, CATCH_THE_FISH, run_id="fish-op")

    assert starter_handler({"action": "cancel", "run_id": "fish-op", "reason": "storm"}) == {
        "run_id": "fish-op",
        "action": "cancel",
        "created": True,
    }
    assert starter_handler(json.dumps({"action": "cancel", "run_id": "fish-op"}))["created"] is False
    [cancel] = [s for s in store.run_statuses("fish-op") if s["status"] == "cancel_requested"]
    assert cancel["reason"] == "storm"
    _end(store, "fish-op", RunState.CANCELLED)
    assert starter_handler({"action": "redrive", "run_id": "fish-op"}) == {
        "run_id": "fish-op",
        "action": "redrive",
        "created": True,
    }


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        pytest.param(
            {"action": "pause", "run_id": "fish-op"}, "action must be one of cancel, redrive", id="action"
        ),
        pytest.param({"action": "cancel"}, "cancel needs the run_id", id="no-run-id"),
        pytest.param({"action": "cancel", "run_id": ""}, "run_id must be a non-empty string", id="empty-id"),
        pytest.param(
            {"action": "cancel", "run_id": "fish-op", "reason": 7}, "reason must be a string", id="reason"
        ),
        pytest.param(
            {"action": "redrive", "run_id": "fish-op", "reason": "x"},
            "only a cancel or a reject takes",
            id="why",
        ),
        pytest.param({"action": "redrive", "run_id": "fish-op"}, "is running: only a failed", id="running"),
        pytest.param({"action": "cancel", "run_id": "nope"}, "no run 'nope'", id="unknown-run"),
        pytest.param(
            {"action": "cancel", "run_id": "other-op"}, "is a run of workflow 'other'", id="not-ours"
        ),
        pytest.param("not json", "event is not JSON", id="not-json"),
    ],
)
def test_the_starter_function_answers_a_bad_operation_with_an_error_instead_of_raising(
    store: MongoStore, starter_handler: Callable[[object], dict[str, Any]], request_: object, error: str
) -> None:
    start_run(store, CATCH_THE_FISH, run_id="fish-op")
    start_run(store, workflow("other", {"p": {"j": {}}}), run_id="other-op")

    answer = starter_handler(request_)

    assert set(answer) == {"error", "error_type"}
    assert error in answer["error"]
    assert not [
        s for s in store.statuses.find({"status": {"$in": ["cancel_requested", "redrive_requested"]}})
    ]
