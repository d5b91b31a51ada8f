"""``delivery: fast``: the job wrapper hands the id of the report it has just recorded to the
orchestrator, which reads the report from MongoDB and applies it as if the Atlas trigger had
delivered it; the trigger's later delivery is a duplicate. Against the real orchestrator and job
wrapper on a real server, with the status keys as deployed; the Lambda adapter with botocore's
Stubber."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pymongo
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from cdk_app.config import AppConfig, ConfigError
from cdk_app.local.atlas_events import envelope
from cdk_app.local.faults import CrashAtStep, CrashingDispatcher, CrashingStore, InjectedCrash
from runtime import contracts
from runtime.aws.handoff import HANDOFF_TIMEOUT_SECONDS, LambdaHandoff, handoff_client
from runtime.definition.loader import load_workflow
from runtime.documents.envelopes import handoff_payload
from runtime.documents.events import JobEvent
from runtime.documents.run import StatusEvent, terminal_id
from runtime.documents.signatures import StatusKeys, attempt_slot
from runtime.errors import SpecError
from runtime.handlers import job as job_function
from runtime.ports import HandoffFailed
from runtime.service.job_attempt import AttemptResult, run_attempt
from runtime.service.orchestrator import Orchestrator, Outcome
from runtime.service.runs import start_run
from runtime.statuses import RunState, StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import RecordingDispatcher, workflow

CHAIN = workflow("relay", {"p": {"a": {}, "b": {"after": ["a"]}}})


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    """The control plane's store: it signs what it records and checks what it applies."""
    store = MongoStore(mongo_client, store_settings, StatusKeys.generate())
    store.ensure_indexes()
    return store


class Cloud:
    """A started run of ``CHAIN`` whose first job has been dispatched, and the orchestrator that
    the trigger and the hand-offs both reach."""

    def __init__(self, store: MongoStore) -> None:
        self.store = store
        self.job_store = store.with_keys(None)  # a job function holds no key
        self.dispatcher = RecordingDispatcher()
        # As deployed: a duplicate within Lambda's retry delay does not dispatch again.
        self.orchestrator = Orchestrator(store=store, dispatcher=self.dispatcher, workflow="relay")
        self.run_id = start_run(store, CHAIN).run_id
        started = store.find_status(self.run_id, None, None, "workflow_started", 0)
        assert started is not None
        self.trigger(started)
        (self.first,) = self.dispatcher.drain()

    def trigger(self, document: dict[str, Any]) -> Outcome:
        """The Atlas trigger's delivery of ``document``, through EventBridge."""
        settings = self.store.settings
        return self.orchestrator.handle(envelope(document, settings.database, settings.statuses_collection))

    def run_job(self, event: JobEvent, handoff: Any) -> AttemptResult:
        result = run_attempt(
            self.job_store,
            lambda payload, context: {"done": payload["job"]},
            event.to_payload(),
            None,
            "req",
            handoff=handoff,
        )
        assert result.outcome == StatusName.SUCCESS
        return result

    def success_of(self, job: str) -> dict[str, Any]:
        found = [
            s for s in self.store.run_statuses(self.run_id) if s["job"] == job and s["status"] == "success"
        ]
        assert len(found) == 1
        return found[0]

    def dispatched(self) -> list[str]:
        return [event.job for event in self.dispatcher.history]


class InProcessHandoff:
    """The hand-off as the orchestrator function receives it: ``handoff_payload``, handled by the
    real orchestrator (in this process instead of through Lambda)."""

    def __init__(self, orchestrator: Orchestrator) -> None:
        self.orchestrator = orchestrator
        self.ids: list[str] = []
        self.outcomes: list[Outcome] = []

    def hand_off(self, status_id: str) -> None:
        self.ids.append(status_id)
        self.outcomes.append(self.orchestrator.handle(handoff_payload(status_id)))


class UnreachableOrchestrator:
    """A hand-off that cannot get through (throttled, timed out, no permission)."""

    def __init__(self) -> None:
        self.calls = 0

    def hand_off(self, status_id: str) -> None:
        self.calls += 1
        raise HandoffFailed("could not invoke relay-orchestrator: Read timeout on endpoint URL")


def test_a_handed_off_success_advances_the_run_and_the_triggers_duplicate_changes_nothing(store):
    cloud = Cloud(store)
    handoff = InProcessHandoff(cloud.orchestrator)

    cloud.run_job(cloud.first, handoff)

    assert handoff.ids == [cloud.success_of("a")["_id"]]
    assert [outcome.action for outcome in handoff.outcomes] == ["advanced"]
    assert cloud.dispatched() == ["a", "b"]
    after_handoff = cloud.store.load_run(cloud.run_id)
    duplicate = cloud.trigger(cloud.success_of("a"))
    assert duplicate.dispatched == ()
    assert cloud.dispatched() == ["a", "b"]
    assert cloud.store.load_run(cloud.run_id) == after_handoff


def test_the_triggers_delivery_first_makes_the_hand_off_the_duplicate(store):
    cloud = Cloud(store)
    late = InProcessHandoff(cloud.orchestrator)
    recorded = cloud.run_job(cloud.first, None)
    assert recorded.outcome == StatusName.SUCCESS

    cloud.trigger(cloud.success_of("a"))
    after_trigger = cloud.store.load_run(cloud.run_id)
    late.hand_off(cloud.success_of("a")["_id"])

    assert late.outcomes[0].dispatched == ()
    assert cloud.dispatched() == ["a", "b"]
    assert cloud.store.load_run(cloud.run_id) == after_trigger


def test_a_run_handed_off_end_to_end_succeeds_with_each_job_run_once(store):
    cloud = Cloud(store)
    handoff = InProcessHandoff(cloud.orchestrator)
    cloud.run_job(cloud.first, handoff)
    (second,) = cloud.dispatcher.drain()
    cloud.run_job(second, handoff)
    for job in ("a", "b"):  # the trigger's deliveries, after the hand-offs
        cloud.trigger(cloud.success_of(job))

    run = cloud.store.read_run(cloud.run_id)
    assert run is not None
    assert run.state == RunState.SUCCEEDED
    assert cloud.dispatched() == ["a", "b"]
    assert [outcome.action for outcome in handoff.outcomes] == ["advanced", "advanced"]


@pytest.mark.parametrize("step", range(1, 5))
def test_a_hand_off_handling_that_crashes_at_any_point_is_repaired_once(store, step):
    """The orchestrator dies at the ``step``-th point where a write or a dispatch of a hand-off's
    handling may die (this handling has four); the
    trigger's duplicate comes at once, Lambda's retry of the hand-off a minute later (past the
    retry delay). The run ends as without the crash, each attempt dispatched for attempt 1 only."""
    cloud = Cloud(store)
    plan = CrashAtStep(step)
    crashing = Orchestrator(
        store=CrashingStore(store, plan),
        dispatcher=CrashingDispatcher(cloud.dispatcher, plan),
        workflow="relay",
    )
    cloud.run_job(cloud.first, None)
    status_id = cloud.success_of("a")["_id"]

    with pytest.raises(InjectedCrash, match=r"injected crash"):
        crashing.handle(handoff_payload(status_id))
    cloud.trigger(cloud.success_of("a"))
    retry = Orchestrator(
        store=store, dispatcher=cloud.dispatcher, redispatch_after=timedelta(0), workflow="relay"
    )
    retry.handle(handoff_payload(status_id))

    dispatched = cloud.dispatcher.drain()
    assert {(event.job, event.attempt) for event in dispatched} == {("b", 1)}
    for event in dispatched:  # a second dispatch of b finds its attempt claimed, and runs nothing
        run_attempt(cloud.job_store, lambda payload, context: {"done": "b"}, event.to_payload(), None, "req")
    cloud.trigger(cloud.success_of("b"))
    run = cloud.store.read_run(cloud.run_id)
    assert run is not None
    assert run.state == RunState.SUCCEEDED
    assert [s["status"] for s in cloud.store.run_statuses(cloud.run_id)].count("success") == 2


def test_a_failed_hand_off_leaves_the_job_succeeded_and_the_trigger_delivers(store):
    cloud = Cloud(store)
    unreachable = UnreachableOrchestrator()

    result = cloud.run_job(cloud.first, unreachable)

    assert unreachable.calls == 1
    assert result.outcome == StatusName.SUCCESS
    assert cloud.dispatched() == ["a"]  # nothing applied yet
    cloud.trigger(cloud.success_of("a"))
    assert cloud.dispatched() == ["a", "b"]


def test_a_report_refused_as_the_attempts_second_is_not_handed_off(store):
    """Only the report the wrapper recorded is handed off: one that lost to another terminal
    report of the attempt (here the orchestrator's record of a failed invocation) is not."""
    cloud = Cloud(store)
    handoff = InProcessHandoff(cloud.orchestrator)
    event = cloud.first

    def lose_the_race(payload: dict[str, Any], context: Any) -> dict[str, Any]:
        failed = StatusEvent(
            run_id=event.run_id,
            workflow="relay",
            status=StatusName.FAILED,
            phase="p",
            job="a",
            attempt=1,
            error="gave up",
        )
        assert cloud.store.record_status(failed)
        return {"done": "a"}

    result = run_attempt(cloud.job_store, lose_the_race, event.to_payload(), None, "req", handoff=handoff)

    assert result.outcome == "superseded"
    assert handoff.ids == []


def test_a_hand_off_of_another_workflows_status_is_dropped(store):
    """Each workflow's orchestrator applies its own workflow's statuses: its rule sees no other,
    and a hand-off naming another's is refused before anything is read of that run."""
    cloud = Cloud(store)
    cloud.run_job(cloud.first, None)
    before = cloud.store.load_run(cloud.run_id)
    elsewhere = Orchestrator(store=store, dispatcher=cloud.dispatcher, workflow="other")
    status_id = cloud.success_of("a")["_id"]

    outcome = elsewhere.handle(handoff_payload(status_id))

    assert outcome.action == "dropped"
    assert outcome.reason == f"status {status_id!r} of workflow 'relay' handed to the orchestrator of 'other'"
    assert cloud.store.load_run(cloud.run_id) == before
    assert cloud.dispatched() == ["a"]


def test_a_hand_off_naming_no_recorded_status_is_dropped(store):
    cloud = Cloud(store)
    before = cloud.store.load_run(cloud.run_id)

    outcome = cloud.orchestrator.handle(handoff_payload(f"{cloud.run_id}/a/1/end/forged"))

    assert outcome.action == "dropped"
    assert cloud.store.load_run(cloud.run_id) == before
    assert cloud.dispatched() == ["a"]


@pytest.mark.parametrize("payload", [{"handoff": 7}, {"handoff": ""}, {"handoff": "x" * 2000}])
def test_a_malformed_hand_off_is_dropped_saying_why(store, payload):
    cloud = Cloud(store)

    outcome = cloud.orchestrator.handle(payload)

    assert outcome.action == "dropped"
    assert "'handoff' must be a status id" in outcome.reason


def test_a_forged_status_handed_off_is_rejected_as_the_trigger_would_reject_it(store):
    """Job code may write a status document and hand its id off itself: the orchestrator checks
    what it reads exactly as it checks what the trigger delivers."""
    cloud = Cloud(store)
    forged = StatusEvent(
        run_id=cloud.run_id,
        workflow="relay",
        status=StatusName.SUCCESS,
        phase="p",
        job="a",
        attempt=1,
        output={},
    )
    assert cloud.job_store.record_status(forged)  # unsigned: the job holds no key
    (document,) = [s for s in cloud.store.run_statuses(cloud.run_id) if s["status"] == "success"]

    outcome = cloud.orchestrator.handle(handoff_payload(document["_id"]))

    assert outcome.action == "rejected"
    assert cloud.dispatched() == ["a"]
    assert [s["status"] for s in cloud.store.run_statuses(cloud.run_id)].count("status_rejected") == 1


# -- the Lambda adapter ----------------------------------------------------------------------


def _lambda_client() -> Any:
    return boto3.client(
        "lambda",
        region_name="eu-west-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_the_adapter_invokes_the_orchestrator_asynchronously_with_the_status_id_alone():
    client = _lambda_client()
    with Stubber(client) as stubber:
        stubber.add_response(
            "invoke",
            {"StatusCode": 202},
            {
                "FunctionName": "relay-orchestrator",
                "InvocationType": "Event",
                "Payload": b'{"handoff": "r1/a/1/end/s"}',
            },
        )
        LambdaHandoff(client, "relay-orchestrator").hand_off("r1/a/1/end/s")
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "status"), [("TooManyRequestsException", 429), ("AccessDeniedException", 403)]
)
def test_the_adapter_raises_when_lambda_refuses(code, status):
    client = _lambda_client()
    with Stubber(client) as stubber:
        stubber.add_client_error("invoke", service_error_code=code, http_status_code=status)
        with pytest.raises(
            HandoffFailed, match=f"could not invoke relay-orchestrator with status 'r1/a/1/end/s'.*{code}"
        ):
            LambdaHandoff(client, "relay-orchestrator").hand_off("r1/a/1/end/s")


def test_the_adapter_raises_on_any_answer_but_queued():
    client = _lambda_client()
    with Stubber(client) as stubber:
        stubber.add_response("invoke", {"StatusCode": 200})
        with pytest.raises(HandoffFailed, match="invoking relay-orchestrator returned status 200"):
            LambdaHandoff(client, "relay-orchestrator").hand_off("r1/a/1/end/s")


def test_the_hand_off_client_waits_a_bounded_time_and_tries_once():
    config = handoff_client("eu-west-1").meta.config

    assert config.connect_timeout == HANDOFF_TIMEOUT_SECONDS
    assert config.read_timeout == HANDOFF_TIMEOUT_SECONDS
    assert config.retries["total_max_attempts"] == 1


def test_a_throttled_hand_off_through_lambda_leaves_the_attempt_succeeded(store):
    cloud = Cloud(store)
    client = _lambda_client()
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "invoke", service_error_code="TooManyRequestsException", http_status_code=429
        )
        result = cloud.run_job(cloud.first, LambdaHandoff(client, "relay-orchestrator"))
        stubber.assert_no_pending_responses()

    assert result.outcome == StatusName.SUCCESS
    cloud.trigger(cloud.success_of("a"))
    assert cloud.dispatched() == ["a", "b"]


class _Context:
    aws_request_id = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def _done_a(payload: object, context: object) -> dict[str, str]:
    return {"done": "a"}


@pytest.mark.parametrize("orchestrator", ["relay-orchestrator", None])
def test_the_job_function_hands_off_when_its_environment_names_the_orchestrator(
    store, mongo_uri, monkeypatch, orchestrator
):
    """The job function as Lambda runs it (its environment, its handler, its store); Lambda's
    client stubbed: an invoke is expected only when ``ORCHESTRATOR_FUNCTION`` is set."""
    cloud = Cloud(store)
    store.ensure_views("relay")
    event = cloud.first
    assert event.attempt_key is not None
    expected_id = terminal_id(event.run_id, "a", 1, None, attempt_slot(event.attempt_key))
    monkeypatch.setenv(contracts.MONGODB_URI, mongo_uri)
    monkeypatch.setenv(contracts.MONGODB_DATABASE, store.settings.database)
    monkeypatch.setenv(contracts.WORKFLOW_NAME, "relay")
    if orchestrator:
        monkeypatch.setenv(contracts.ORCHESTRATOR_FUNCTION, orchestrator)
    else:
        monkeypatch.delenv(contracts.ORCHESTRATOR_FUNCTION, raising=False)
    client = _lambda_client()
    monkeypatch.setattr(job_function, "handoff_client", lambda: client)
    monkeypatch.setattr(job_function, "_state", {})
    monkeypatch.setattr(job_function, "load_user_handler", lambda spec: _done_a)
    with Stubber(client) as stubber:
        if orchestrator:
            stubber.add_response(
                "invoke",
                {"StatusCode": 202},
                {
                    "FunctionName": orchestrator,
                    "InvocationType": "Event",
                    "Payload": json.dumps({"handoff": expected_id}).encode(),
                },
            )
        result = job_function.handler(event.to_payload(), _Context())
        stubber.assert_no_pending_responses()

    assert result == {"outcome": "success", "error": None}
    assert cloud.success_of("a")["_id"] == expected_id
    assert (job_function._state["handoff"] is None) == (orchestrator is None)


# -- the setting -----------------------------------------------------------------------------


def _spec(tmp_path: Path, delivery: str) -> Path:
    path = tmp_path / "relay.yaml"
    path.write_text(f"workflow: relay\ndelivery: {delivery}\nphases:\n  p:\n    jobs:\n      a: {{}}\n")
    return path


@pytest.mark.parametrize("delivery", ["fast", "economy"])
def test_the_spec_names_the_delivery(tmp_path, delivery):
    assert load_workflow(_spec(tmp_path, delivery)).delivery == delivery


def test_a_spec_without_delivery_leaves_it_to_the_app(tmp_path):
    path = tmp_path / "relay.yaml"
    path.write_text("workflow: relay\nphases:\n  p:\n    jobs:\n      a: {}\n")
    assert load_workflow(path).delivery is None


def test_an_unknown_delivery_in_the_spec_is_a_problem_saying_where(tmp_path):
    with pytest.raises(SpecError) as raised:
        load_workflow(_spec(tmp_path, "fastest"))
    message = str(raised.value)
    assert "$.delivery: unknown value 'fastest'" in message
    assert "expected one of: fast, economy (line 2)" in message


def test_the_context_default_is_fast_and_economy_can_be_chosen():
    assert AppConfig.from_mapping({}).delivery == "fast"
    assert AppConfig.from_mapping({"delivery": "economy"}).delivery == "economy"


def test_an_unknown_delivery_in_the_context_is_a_config_problem():
    with pytest.raises(ConfigError, match="delivery must be fast or economy, not 'quick'"):
        AppConfig.from_mapping({"delivery": "quick"})
