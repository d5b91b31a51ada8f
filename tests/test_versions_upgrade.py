"""``redrive --upgrade`` (docs/operating.md, "Versions and deploys"): an ended run moves to the
current definition and versions when what it did still means the same there, and is refused
with every reason otherwise; a plain redrive keeps the run's versions. Through the engine's
check, the operation against MongoDB, the orchestrator (a fan-out whose items ran on the old
versions in a warm orchestrator too) and the starter function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pymongo
import pytest

from runtime.definition.model import Workflow
from runtime.documents.deployment import Deployment
from runtime.engine.upgrade import upgrade_problems, upgraded_jobs
from runtime.errors import RunError
from runtime.handlers import starter
from runtime.service.operations import request_redrive, request_upgrade
from runtime.service.runs import start_run
from runtime.statuses import JobState, RunState
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.cli_harness import cli
from tests.engine_harness import Driver
from tests.test_engine_decisions import run_of, spec, succeeded
from tests.test_engine_operations import failed
from tests.test_versions_runtime import STARTER_ARN, always_failing, pinned

TWO_PHASES = spec({"p": {"a": {}, "b": {"after": ["a"]}}, "q": {"c": {}, "d": {"after": ["c"]}}})
FAILED_IN_Q = run_of(
    TWO_PHASES,
    state=RunState.FAILED,
    phase="q",
    completed_by={"p": "success:b:1"},
    jobs={"a": succeeded(), "b": succeeded(), "c": failed(3)},
)


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


# -- what the engine allows -------------------------------------------------------------------


def test_a_run_moves_when_its_succeeded_jobs_mean_the_same_and_gains_or_drops_the_others() -> None:
    current = spec({"p": {"a": {}, "b": {"after": ["a"]}}, "q": {"c": {"retries": 5}, "e": {"after": ["c"]}}})

    assert upgrade_problems(FAILED_IN_Q, current) == []
    jobs = upgraded_jobs(FAILED_IN_Q, current)
    assert list(jobs) == ["a", "b", "c", "e"], "d (never run) is gone, e is new"
    assert jobs["c"] == FAILED_IN_Q.jobs["c"]
    assert jobs["e"].state == JobState.PENDING


@pytest.mark.parametrize(
    ("phases", "reason"),
    [
        ({"p": {"a": {}}, "q": {"c": {}}}, "job 'b' succeeded, and the current definition has no such job"),
        (
            {"p": {"a": {}, "b": {}}, "q": {"c": {}}},
            "job 'b' succeeded after [a], and now runs after []",
        ),
        ({"p": {"a": {}}, "r": {"b": {}, "c": {}}}, "job 'b' succeeded in phase 'p', and now is in 'r'"),
        (
            {"p": {"a": {}, "b": {"after": ["a"]}}, "r": {"c": {}}},
            "the run goes on from phase 'q', which the current definition does not have",
        ),
        (
            {"p": {"a": {}, "b": {"after": ["a"]}, "n": {}}, "q": {"c": {}}},
            "job 'n' is new in phase 'p', which this run has completed",
        ),
    ],
    ids=["removed", "after-changed", "phase-changed", "phase-gone", "new-in-completed-phase"],
)
def test_a_run_that_cannot_move_is_refused_with_the_reason(phases: dict[str, Any], reason: str) -> None:
    assert reason in upgrade_problems(FAILED_IN_Q, spec(phases))


# -- the operation, and what the redrive then runs ---------------------------------------------

FANS_OUT = Workflow.from_document(
    {
        "workflow": "pinned",
        "phases": [
            {
                "name": "p",
                "jobs": [
                    {"name": "first", "memory": 128, "timeout": 60, "retries": 0},
                    {
                        "name": "items",
                        "after": ["first"],
                        "memory": 128,
                        "timeout": 60,
                        "retries": 0,
                        "for_each": "input.items",
                        "max_concurrency": 2,
                    },
                ],
            }
        ],
    }
)


def test_a_redrive_keeps_the_runs_versions_and_an_upgrade_runs_the_current_ones_fan_out_included(
    store: MongoStore,
) -> None:
    v1, v2 = pinned(FANS_OUT, 1), pinned(FANS_OUT, 2)
    driver = Driver(store, FANS_OUT, handlers={"items": always_failing}, deployment=v1)
    first = driver.run(run_id="up-1", run_input={"items": [1, 2, 3]})
    assert first.run["status"] == "failed"

    request_redrive(store, "up-1")
    again = driver.settle("up-1")
    assert again.run["status"] == "failed"
    kept = len(again.dispatched)
    assert {event.function for event in again.dispatched} == set(v1.functions.values())

    driver.handlers = {}  # version 2 of the items' code works
    request_upgrade(store, "up-1", FANS_OUT, v2)
    upgraded = driver.settle("up-1")

    assert upgraded.run["status"] == "succeeded"
    assert upgraded.run["deployment"]["deployId"] == v2.deploy_id
    after = upgraded.dispatched[kept:]
    assert {(event.job, event.index) for event in after} == {("items", 0), ("items", 1), ("items", 2)}
    assert {event.function for event in after} == {v2.functions["items"]}, "no item runs version 1"


def test_an_upgrade_the_run_cannot_take_is_refused_and_changes_nothing(store: MongoStore) -> None:
    definition = spec({"p": {"a": {}, "b": {"after": ["a"], "retries": 0}}})
    Driver(store, definition, handlers={"b": always_failing}, deployment=pinned(definition)).run(
        run_id="up-2"
    )
    before = store.load_run("up-2")

    with pytest.raises(
        RunError, match=r"run up-2 cannot move to the current definition: job 'a' succeeded, and"
    ):
        request_upgrade(store, "up-2", spec({"p": {"b": {}}}), None)

    assert store.load_run("up-2") == before
    assert [s["status"] for s in store.run_statuses("up-2")].count("redrive_requested") == 0


def test_a_running_run_is_not_upgraded(store: MongoStore) -> None:
    definition = spec({"p": {"a": {}}})
    start_run(store, definition, run_id="up-3")

    with pytest.raises(RunError, match="run up-3 is running: only a failed or cancelled run can be upgraded"):
        request_upgrade(store, "up-3", definition, None)


def test_the_starter_upgrades_a_run_to_its_own_deploy(
    store: MongoStore, mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    definition = spec({"p": {"a": {}, "b": {"after": ["a"], "retries": 0}}})
    old: Deployment = pinned(definition, 1)
    Driver(store, definition, handlers={"b": always_failing}, deployment=old).run(run_id="up-4")
    (tmp_path / "definition.json").write_text(json.dumps(definition.to_document()))
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(tmp_path))
    monkeypatch.setenv("WORKFLOW_DEFINITION_FILE", "definition.json")
    monkeypatch.setenv("JOB_VERSIONS", "5,6")
    monkeypatch.setenv("MONGODB_URI", mongo_uri)
    monkeypatch.setenv("MONGODB_DATABASE", store.settings.database)
    monkeypatch.setattr(starter, "_state", {})
    context = type("Context", (), {"invoked_function_arn": STARTER_ARN})()

    refused = starter.handler({"action": "cancel", "run_id": "up-4", "upgrade": True}, context)
    answer = starter.handler({"action": "redrive", "run_id": "up-4", "upgrade": True}, context)

    assert "upgrade is true or false, on a redrive only" in refused["error"]
    assert answer == {"run_id": "up-4", "action": "redrive", "created": True}
    run = store.read_run("up-4")
    assert run is not None
    assert run.deployment is not None
    assert run.deployment.functions["b"].endswith(":function:w-job-b:6")
    assert run.deployment.deploy_id != old.deploy_id


def test_the_cli_refuses_to_upgrade_a_run_pinned_to_a_deploy_and_says_how(
    store: MongoStore, mongo_uri: str, tmp_path: Path
) -> None:
    definition = spec({"p": {"a": {"retries": 0}}})
    Driver(store, definition, handlers={"a": always_failing}, deployment=pinned(definition)).run(
        run_id="up-5"
    )

    refused = cli(
        "redrive",
        "up-5",
        "--upgrade",
        "--workflows",
        str(tmp_path),
        "--mongo-uri",
        mongo_uri,
        "--database",
        store.settings.database,
    )
    misused = cli("redrive", "up-5", "--workflows", str(tmp_path), "--mongo-uri", mongo_uri)

    assert refused.exit_code == 1
    assert "its starter knows the current ones: aws lambda invoke --function-name w-starter" in refused.stderr
    assert '{"action": "redrive", "upgrade": true, "run_id": "up-5"}' in refused.stderr
    assert (misused.exit_code, misused.stderr.strip()) == (
        2,
        "python -m cdk_app redrive: error: --workflows goes with --upgrade only",
    )


# -- which deploy a run runs --------------------------------------------------------------------


def test_runs_and_status_show_each_runs_deploy_and_runs_deploy_filters_by_it(
    store: MongoStore, mongo_uri: str
) -> None:
    definition = spec({"p": {"a": {}}})
    v1, v2 = pinned(definition, 1), pinned(definition, 2)
    for run_id, deployment in (("d-1", v1), ("d-2", v2), ("d-3", v1), ("d-4", None)):
        start_run(store, definition, run_id=run_id, deployment=deployment)
    database = ("--mongo-uri", mongo_uri, "--database", store.settings.database)

    everything = cli("runs", "--json", *database)
    of_v1 = cli("runs", "--json", "--deploy", v1.deploy_id, *database)
    status = cli("status", "d-2", "--json", *database)
    table = cli("runs", "--deploy", v2.deploy_id, *database)

    assert {run["run_id"]: run["deploy_id"] for run in everything.listing} == {
        "d-1": v1.deploy_id,
        "d-2": v2.deploy_id,
        "d-3": v1.deploy_id,
        "d-4": None,
    }
    assert [run["run_id"] for run in of_v1.listing] == ["d-3", "d-1"]
    assert status.report["deploy_id"] == v2.deploy_id
    assert "d-2" in table.stdout
    assert v2.deploy_id in table.stdout
    assert "d-1" not in table.stdout
