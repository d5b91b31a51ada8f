"""Runs pinned to the versions they started with (docs/operating.md, "Versions and deploys"): the
starter records the version map in the run, and every dispatch of the run (the orchestrator's,
a fan-out's items, a retry, a timer's, the failure handlers', the reconciler's resend) invokes
the qualified function the map names; a run without a map invokes the function by name."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pymongo
import pytest
from botocore.stub import Stubber

from runtime.aws.dispatch import LambdaDispatcher
from runtime.aws.versions import VersionsError, cloud_deployment
from runtime.clock import utcnow
from runtime.definition.model import HANDLERS_PHASE, Job, Phase, RetryPolicy, Workflow, job_function_name
from runtime.documents.deployment import Deployment, deploy_id_of, deployment_of
from runtime.documents.events import JobEvent
from runtime.documents.run import StatusEvent
from runtime.handlers import starter
from runtime.service.orchestrator import Orchestrator
from runtime.service.reconciler import Reconciler
from runtime.service.runs import start_run
from runtime.service.timers import fire_due_timers
from runtime.statuses import StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import Driver, RecordingDispatcher

STARTER_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:pinned-starter"


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def pinned(definition: Workflow, version: int = 7) -> Deployment:
    """A version map as a deploy's starter records it: every job with a function, at ``version``."""
    functions = {
        job.name: f"arn:aws:lambda:eu-west-1:123456789012:function:"
        f"{job_function_name(definition.name, job.name)}:{version}"
        for job in definition.jobs()
        if job.runs_code
    }
    return deployment_of(definition.to_document(), functions)


def failing_first(times: int) -> Any:
    calls = {"n": 0}

    def handler(event: dict[str, Any], context: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= times:
            raise RuntimeError(f"failure {calls['n']}")
        return {"ok": True}

    return handler


def always_failing(event: dict[str, Any], context: Any) -> Any:
    raise RuntimeError("broken for good")


def assert_all_pinned(dispatched: list[JobEvent], deployment: Deployment) -> None:
    assert dispatched, "something was dispatched"
    for event in dispatched:
        assert event.function == deployment.functions[event.job], (event.job, event.attempt, event.index)


ITEMS_AND_RETRY = Workflow(
    name="pinned",
    phases=(
        Phase(
            name="p",
            jobs=(
                Job(name="flaky", phase="p", retry=RetryPolicy(max=2)),
                Job(name="items", phase="p", after=("flaky",), for_each="input.items", max_concurrency=2),
            ),
        ),
    ),
)


def test_every_dispatch_of_a_pinned_run_invokes_the_version_its_map_names(store: MongoStore) -> None:
    deployment = pinned(ITEMS_AND_RETRY)
    driver = Driver(store, ITEMS_AND_RETRY, handlers={"flaky": failing_first(1)}, deployment=deployment)

    outcome = driver.run(run_id="pinned-1", run_input={"items": [1, 2, 3, 4, 5]})

    assert outcome.run["status"] == "succeeded"
    assert {(event.job, event.index) for event in outcome.dispatched} >= {("flaky", None), ("items", 4)}
    assert [event.attempt for event in outcome.dispatched if event.job == "flaky"] == [1, 2]
    assert_all_pinned(outcome.dispatched, deployment)
    assert outcome.run["deployment"] == {"deployId": deployment.deploy_id, "functions": deployment.functions}


def test_the_failure_handlers_of_a_pinned_run_run_its_versions_too(store: MongoStore) -> None:
    definition = Workflow(
        name="pinned",
        phases=(Phase(name="p", jobs=(Job(name="breaks", phase="p", retry=RetryPolicy(max=0)),)),),
        on_failure=Phase(name=HANDLERS_PHASE, jobs=(Job(name="clean_up", phase=HANDLERS_PHASE),)),
    )
    deployment = pinned(definition)
    driver = Driver(store, definition, handlers={"breaks": always_failing}, deployment=deployment)

    outcome = driver.run(run_id="pinned-2")

    assert outcome.run["status"] == "failed"
    assert [event.job for event in outcome.dispatched] == ["breaks", "clean_up"]
    assert_all_pinned(outcome.dispatched, deployment)


def test_a_run_without_a_map_invokes_its_functions_by_name(store: MongoStore) -> None:
    outcome = Driver(store, ITEMS_AND_RETRY).run(run_id="unpinned", run_input={"items": [1]})

    assert outcome.run["status"] == "succeeded"
    assert "deployment" not in outcome.run
    assert {event.function for event in outcome.dispatched} == {None}


def test_the_reconcilers_resend_and_a_timers_dispatch_invoke_the_runs_versions(store: MongoStore) -> None:
    definition = Workflow(
        name="pinned",
        phases=(Phase(name="p", jobs=(Job(name="slow", phase="p", retry=RetryPolicy(max=1, delay=1)),)),),
    )
    deployment = pinned(definition)
    start_run(store, definition, run_id="pinned-3", deployment=deployment)
    dropped = RecordingDispatcher()
    [started] = store.run_statuses("pinned-3")
    Orchestrator(store=store, dispatcher=dropped).handle(
        {"detail": {"operationType": "insert", "fullDocument": started}}
    )
    resent = RecordingDispatcher()

    Reconciler(
        store, resent, stale_after=timedelta(0), lost_invocation_after=lambda job: timedelta(0)
    ).reconcile_run("pinned-3", utcnow() + timedelta(minutes=1))
    assert [(event.job, event.attempt) for event in resent.events] == [("slow", 1)]
    assert_all_pinned(resent.events, deployment)

    # The attempt fails with a delay before its retry: the timer dispatches the retry.
    failed = StatusEvent(
        run_id="pinned-3",
        workflow="pinned",
        status=StatusName.FAILED,
        phase="p",
        job="slow",
        attempt=1,
        error="x",
    )
    timed = RecordingDispatcher()
    Orchestrator(store=store, dispatcher=timed).apply(failed)
    fire_due_timers(store, utcnow() + timedelta(minutes=5))
    fired = [s for s in store.run_statuses("pinned-3") if s["status"] == "timer_fired"]
    Orchestrator(store=store, dispatcher=timed).handle(
        {"detail": {"operationType": "insert", "fullDocument": fired[0]}}
    )

    assert [(event.job, event.attempt) for event in timed.events] == [("slow", 2)]
    assert_all_pinned(timed.events, deployment)


def test_the_lambda_dispatcher_invokes_the_qualified_function_of_the_event() -> None:
    client = boto3.client("lambda", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    event = JobEvent(
        run_id="r",
        workflow="w",
        phase="p",
        job="a",
        attempt=1,
        function="arn:aws:lambda:eu-west-1:1:function:w-job-a:3",
    )
    with Stubber(client) as stub:
        stub.add_response(
            "invoke",
            {"StatusCode": 202},
            {
                "FunctionName": "arn:aws:lambda:eu-west-1:1:function:w-job-a:3",
                "InvocationType": "Event",
                "Payload": json.dumps(event.to_payload()).encode(),
            },
        )
        LambdaDispatcher(client).dispatch(event)
        stub.assert_no_pending_responses()
    assert "function" not in event.to_payload(), "where the event goes is not what the job receives"


def test_the_starter_pins_each_run_to_the_versions_its_deploy_published(
    store: MongoStore, mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "definition.json").write_text(json.dumps(ITEMS_AND_RETRY.to_document()))
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(tmp_path))
    monkeypatch.setenv("WORKFLOW_DEFINITION_FILE", "definition.json")
    monkeypatch.setenv("JOB_VERSIONS", "4,9")
    monkeypatch.setenv("MONGODB_URI", mongo_uri)
    monkeypatch.setenv("MONGODB_DATABASE", store.settings.database)
    monkeypatch.setattr(starter, "_state", {})
    context = type("Context", (), {"invoked_function_arn": STARTER_ARN})()

    assert starter.handler({"run_id": "from-lambda"}, context)["created"] is True

    run = store.read_run("from-lambda")
    assert run is not None
    assert run.deployment is not None
    prefix = "arn:aws:lambda:eu-west-1:123456789012:function:"
    assert run.deployment.functions == {
        "flaky": f"{prefix}pinned-job-flaky:4",
        "items": f"{prefix}pinned-job-items:9",
    }
    assert run.deployment.deploy_id == deploy_id_of(ITEMS_AND_RETRY.to_document(), run.deployment.functions)


@pytest.mark.parametrize("versions", ["4", "4,9,1", "4,latest", ""])
def test_versions_that_do_not_match_the_definition_are_a_clear_error(versions: str) -> None:
    with pytest.raises(
        VersionsError, match=r"JOB_VERSIONS must list 2 version numbers, one per job .*flaky, items"
    ):
        cloud_deployment(ITEMS_AND_RETRY, versions, STARTER_ARN)


def test_the_deploy_id_changes_with_a_version_or_the_definition_and_only_then() -> None:
    functions = pinned(ITEMS_AND_RETRY).functions
    same = deploy_id_of(ITEMS_AND_RETRY.to_document(), dict(functions))
    other_version = deploy_id_of(
        ITEMS_AND_RETRY.to_document(), {**functions, "flaky": functions["flaky"][:-1] + "8"}
    )
    other_definition = deploy_id_of(
        Workflow(name="pinned", phases=ITEMS_AND_RETRY.phases, timeout=60).to_document(), dict(functions)
    )

    assert same == pinned(ITEMS_AND_RETRY).deploy_id
    assert len({same, other_version, other_definition}) == 3
