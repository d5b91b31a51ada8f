"""Each function's cold start, as the handler does it: a small connection pool sized for the
threads that use the store at once, and no index work but in the starter and the reconciler."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pymongo
import pytest

from runtime.handlers import job, notifier, orchestrator, reconciler, starter
from runtime.store.connection import MAX_IDLE_MS
from runtime.store.mongo import MongoStore
from tests.engine_harness import workflow
from tests.lambda_sandbox import fake_aws

LINE = workflow("line", {"p": {"a": {}}})


@pytest.fixture
def database(mongo_uri: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A database of its own, and the environment every function reads, with the test server's
    URI, and a stand-in for Secrets Manager holding the status key the system functions read."""
    name = f"cold_{uuid.uuid4().hex[:12]}"
    (tmp_path / "workflow.json").write_text(json.dumps(LINE.to_document()))
    with fake_aws() as endpoint:
        for key, value in {
            "AWS_ENDPOINT_URL": endpoint.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "STATUS_KEY_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:111111111111:secret:status-key-AbCdEf",
            "MONGODB_URI": mongo_uri,
            "MONGODB_DATABASE": name,
            "AWS_DEFAULT_REGION": "us-east-1",
            "NOTIFY_TOPIC_ARN": "arn:aws:sns:us-east-1:111111111111:line",
            "WORKFLOW_NAME": "line",
            "WORKFLOW_DEFINITION_FILE": "workflow.json",
            "LAMBDA_TASK_ROOT": str(tmp_path),
        }.items():
            monkeypatch.setenv(key, value)
        for module in (job, notifier, orchestrator, reconciler, starter):
            monkeypatch.setattr(module, "_state", {})
        yield name


def cold_start_job() -> MongoStore:
    assert job.handler({"not": "a job event"}, None)["outcome"] == "dropped"
    store: MongoStore = job._state["store"]
    return store


def cold_start_starter() -> MongoStore:
    assert "error" in starter.handler({"action": "frobnicate", "run_id": "r"}, None)
    store: MongoStore = starter._state["store"]
    return store


COLD_STARTS: dict[str, tuple[ModuleType, Callable[[], Any]]] = {
    "job": (job, cold_start_job),
    "orchestrator": (orchestrator, lambda: orchestrator._build().store),
    "notifier": (notifier, lambda: notifier._build().store),
    "starter": (starter, cold_start_starter),
    "reconciler": (reconciler, lambda: reconciler._build("line").store),
}


@pytest.mark.parametrize("function", sorted(COLD_STARTS))
def test_every_function_uses_a_small_pool_that_opens_nothing_ahead_and_closes_idle_connections(
    function: str, database: str
) -> None:
    module, cold_start = COLD_STARTS[function]

    store: MongoStore = cold_start()

    pool = store.runs.database.client.options.pool_options
    assert pool.max_pool_size == module.STORE_CONNECTIONS <= 4
    assert pool.min_pool_size == 0
    assert pool.max_idle_time_seconds == MAX_IDLE_MS / 1000


def test_the_job_pool_holds_the_attempt_and_its_heartbeat() -> None:
    assert job.STORE_CONNECTIONS == 2


@pytest.mark.parametrize("function", ["job", "orchestrator", "notifier"])
def test_a_cold_start_of_the_many_functions_creates_no_index(
    function: str, database: str, mongo_client: pymongo.MongoClient[dict]
) -> None:
    """The job functions (one process per concurrent attempt), the orchestrator and the notifier
    start often: they leave the indexes to the starter and the reconciler."""
    _, cold_start = COLD_STARTS[function]

    cold_start()

    assert mongo_client[database].list_collection_names() == []


@pytest.mark.parametrize("function", ["starter", "reconciler"])
def test_the_starter_and_the_reconciler_create_the_indexes_on_their_cold_start(
    function: str, database: str, mongo_client: pymongo.MongoClient[dict]
) -> None:
    _, cold_start = COLD_STARTS[function]

    cold_start()

    indexes = mongo_client[database]["items"].index_information()
    assert "one_item_per_index" in indexes
    assert indexes["one_item_per_index"]["unique"] is True
    assert len(mongo_client[database]["statuses"].index_information()) > 1


def test_a_run_started_by_the_starter_finds_the_indexes_in_place(
    database: str, mongo_client: pymongo.MongoClient[dict]
) -> None:
    """A run exists only after the starter created it, on a process that ensured the indexes."""
    assert starter.handler({"run_id": "first"}, None) == {"run_id": "first", "created": True}

    assert "one_item_per_index" in mongo_client[database]["items"].index_information()
