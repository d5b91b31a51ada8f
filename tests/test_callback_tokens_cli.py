"""Callback tokens through the operator path's doors: ``status`` shows the token of a job that
waits without code, ``complete`` and ``heartbeat`` in the CLI (receipts, refusals and their exit
codes), ``Client.complete`` / ``Client.heartbeat``, and the starter's ``complete`` and
``heartbeat`` actions, each on the real embedded MongoDB with the local control plane's key."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from cdk_app.errors import EXIT_PROBLEMS, EXIT_USAGE
from runtime.client import Client
from runtime.handlers import starter
from runtime.service.runs import start_run
from runtime.statuses import RunState
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from runtime.store.status_keys import local_keys
from tests.cli_harness import cli
from tests.engine_harness import Driver
from tests.test_callback_tokens import batch, waiting_token
from tests.test_dev_server import WAIT, dev_server, wait_until
from tests.test_operations import starter_of


@pytest.fixture
def database(mongo_client: pymongo.MongoClient[dict[str, Any]]) -> Iterator[str]:
    name = f"callbacks_{uuid.uuid4().hex[:12]}"
    yield name
    mongo_client.drop_database(name)


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict[str, Any]], database: str) -> MongoStore:
    """The database's store, keyed as the CLI on it is: with the local control plane's key."""
    plain = MongoStore(mongo_client, StoreSettings(database=database))
    plain.ensure_indexes()
    return plain.with_keys(local_keys(plain))


def waiting_run(store: MongoStore) -> tuple[Driver, str]:
    driver = Driver(store, batch())
    start_run(store, driver.definition, run_id="r1")
    driver.settle("r1")
    return driver, waiting_token(store, "r1")


def test_status_shows_the_token_and_complete_completes_the_job_once(
    store: MongoStore, mongo_uri: str, database: str
) -> None:
    where = ["--mongo-uri", mongo_uri, "--database", database]
    driver, token = waiting_run(store)

    status = cli("status", "r1", "--json", *where)
    table = cli("status", "r1", *where)
    done = cli("complete", token, "--output", '{"rows": 2}', "--id", "c-1", "--json", *where)
    again = cli("complete", token, "--output", '{"rows": 2}', "--id", "c-1", *where)
    outcome = driver.settle("r1")
    late = cli("complete", token, "--error", "too late", *where)

    assert json.loads(status.stdout)["jobs"]["export"]["callback_token"] == token
    assert f"complete {token}" in table.stdout.replace("\n", "")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout) == {
        "run_id": "r1",
        "job": "export",
        "attempt": 1,
        "id": "c-1",
        "created": True,
    }
    assert "(recorded before with this id)" in again.stdout
    assert outcome.run["status"] == RunState.SUCCEEDED
    assert outcome.run["jobs"]["export"]["output"] == {"rows": 2}
    assert late.exit_code == EXIT_PROBLEMS
    assert "run r1 has ended (succeeded): its callback tokens are refused" in late.stderr


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["cb1.x.y", "--output", "{oops"], EXIT_USAGE, "--output is not JSON"),
        (["hello", "--output", "1"], EXIT_PROBLEMS, "shape cb1.<attempt>.<signature>"),
        (["hello"], EXIT_USAGE, "one of the arguments --output --error is required"),
        (["hello", "--output", "1", "--error", "x"], EXIT_USAGE, "not allowed with argument"),
    ],
    ids=["output", "token", "neither", "both"],
)
def test_a_completion_that_cannot_be_made_says_why(
    store: MongoStore, mongo_uri: str, database: str, argv: list[str], code: int, message: str
) -> None:
    result = cli("complete", *argv, "--mongo-uri", mongo_uri, "--database", database)

    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_heartbeat_in_the_cli_and_the_client(store: MongoStore, mongo_uri: str, database: str) -> None:
    driver, token = waiting_run(store)
    client = Client(mongo_uri, database=database)

    beat = cli("heartbeat", token, "--id", "h-1", "--mongo-uri", mongo_uri, "--database", database)
    again = client.heartbeat(token, heartbeat_id="h-1")
    receipt = client.complete(token, error="the batch failed", completion_id="c-9")
    outcome = driver.settle("r1")

    assert beat.exit_code == 0, beat.stderr
    assert "heartbeat recorded for job export of run r1 (attempt 1) as h-1" in beat.stdout
    assert again.created is False
    assert (receipt.id, receipt.created) == ("c-9", True)
    assert outcome.run["status"] == RunState.FAILED
    assert "callback failed: the batch failed" in outcome.run["error"]


def test_the_starter_function_completes_a_callback_of_its_workflow_and_answers_a_bad_one_with_an_error(
    store: MongoStore, mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver, token = waiting_run(store)
    handler = starter_of(driver.definition, store, mongo_uri, tmp_path, monkeypatch)
    tokenless = handler({"action": "complete", "output": 1})
    starter._state["store"] = starter._state["store"].with_keys(store.keys)  # its key, as deployed

    beat = handler({"action": "heartbeat", "token": token, "id": "h-1"})
    both = handler({"action": "complete", "token": token, "output": 1, "error": "x"})
    answer = handler({"action": "complete", "token": token, "output": {"rows": 5}, "id": "c-1"})
    again = handler({"action": "complete", "token": token, "output": {"rows": 5}, "id": "c-1"})

    assert tokenless == {"error": "complete needs the callback token, got None", "error_type": "EventError"}
    assert beat["created"] is True
    assert both["error_type"] == "EventError"
    assert answer == {"run_id": "r1", "job": "export", "attempt": 1, "id": "c-1", "created": True}
    assert again["created"] is False
    assert driver.settle("r1").run["jobs"]["export"]["output"] == {"rows": 5}


def test_the_dev_server_shows_the_complete_command_and_runs_the_job_after_it(tmp_path: Path) -> None:
    specs = Path(__file__).resolve().parent / "specs" / "time"
    with dev_server(tmp_path, "--data", "data", "--workflows", str(specs)) as dev:
        run_id = dev.cli("start", str(specs / "batch_export.yaml")).stdout.strip()
        wait_until(lambda: _token(dev, run_id) is not None, "the export to wait for its callback")
        token = _token(dev, run_id)
        assert token is not None
        done = dev.cli("complete", token, "--output", '{"rows": 9}')
        status = dev.cli("status", run_id, "--wait", WAIT, "--json")

    assert done.exit_code == 0, done.stderr
    assert status.report["jobs"]["export"]["output"] == {"rows": 9}
    assert status.jobs()["publish"] == ("succeeded", 1)
    assert f"python -m cdk_app complete {token} --output '{{...}}'" in dev.stderr


def _token(dev: Any, run_id: str) -> str | None:
    status = dev.cli("status", run_id, "--json")
    return None if status.exit_code != 0 else status.report["jobs"]["export"].get("callback_token")
