"""Authenticated statuses (docs/architecture.md, "Trust"): the threat model's T1 (a well-formed
status put on the bus), T2 (a job's code writing for another attempt, run or workflow, or an
operation) and T5 (duplicated, replayed and reordered authentic statuses handled as before),
against the real orchestrator, reconciler, notifier and job wrapper on a real server."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pymongo
import pytest

from cdk_app.local.atlas_events import envelope
from cdk_app.local.faults import CrashAtStep
from runtime import contracts
from runtime.clock import utcnow
from runtime.definition.model import Approval, Job, Phase, Workflow
from runtime.documents.events import JobEvent
from runtime.documents.run import StatusEvent, status_from_document
from runtime.documents.signatures import StatusKeys, attempt_slot
from runtime.errors import StoreError
from runtime.service.job_attempt import run_attempt
from runtime.service.notifier import NotifierService
from runtime.service.operations import run_history
from runtime.service.orchestrator import Orchestrator
from runtime.service.reconciler import Reconciler
from runtime.service.runs import start_run
from runtime.statuses import StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from runtime.store.status_keys import local_keys, operator_keys
from tests.engine_harness import Driver, Faults, RecordingDispatcher, workflow
from tests.test_engine_faults import EVENT_FIXTURES as EVENTS
from tests.test_engine_faults import MIXED, MIXED_HANDLERS, _check_same_as_fault_free

TWO_JOBS = workflow("pair", {"p": {"a": {}, "b": {}}, "q": {"c": {}}})
APPROVING = Workflow(
    name="gate",
    phases=(Phase(name="p", jobs=(Job(name="sign_off", phase="p", approval=Approval(timeout=600)),)),),
)


@pytest.fixture
def keys() -> StatusKeys:
    return StatusKeys.generate()


@pytest.fixture
def store(
    mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings, keys: StatusKeys
) -> MongoStore:
    """The control plane's store: it signs what it records and checks what it applies."""
    store = MongoStore(mongo_client, store_settings, keys)
    store.ensure_indexes()
    return store


@pytest.fixture
def job_store(store: MongoStore) -> MongoStore:
    """What a job function has: the same database, no key."""
    return store.with_keys(None)


class Cloud:
    """A started run of ``definition`` whose first jobs have been dispatched."""

    def __init__(self, store: MongoStore, definition: Workflow) -> None:
        self.store = store
        self.dispatcher = RecordingDispatcher()
        self.orchestrator = Orchestrator(
            store=store, dispatcher=self.dispatcher, redispatch_after=timedelta(0)
        )
        self.run_id = start_run(store, definition).run_id
        self.deliver_new()

    def deliver(self, status: StatusEvent) -> Any:
        """``status`` as an event on the bus, whoever put it there."""
        document = status.to_document(status.date or _now())
        return self.orchestrator.handle(
            envelope(document, self.store.settings.database, self.store.settings.statuses_collection)
        )

    def deliver_new(self) -> None:
        for document in self.store.run_statuses(self.run_id):
            if document["status"] in ("workflow_started", "approval_requested"):
                self.orchestrator.handle(
                    envelope(document, self.store.settings.database, self.store.settings.statuses_collection)
                )

    def run(self) -> dict[str, Any]:
        run = self.store.load_run(self.run_id)
        assert run is not None
        return run

    def rejections(self) -> list[dict[str, Any]]:
        return [s for s in self.store.run_statuses(self.run_id) if s["status"] == "status_rejected"]


def _now() -> datetime:
    return utcnow()


def _report(job: JobEvent, status: StatusName = StatusName.SUCCESS, **fields: Any) -> StatusEvent:
    return StatusEvent(
        run_id=job.run_id,
        workflow=job.workflow,
        status=status,
        phase=job.phase,
        job=job.job,
        attempt=job.attempt,
        index=job.index,
        **({"output": {"forged": True}} if status == StatusName.SUCCESS else {}) | fields,
    )


def _unchanged(cloud: Cloud, before: dict[str, Any]) -> None:
    after = cloud.run()
    assert after["jobs"] == before["jobs"]
    assert after["status"] == before["status"]


# -- T1: a well-formed status put on the bus ----------------------------------------------------


def test_a_dispatched_attempt_carries_its_own_key_and_nothing_else_does(
    store: MongoStore, keys: StatusKeys
) -> None:
    cloud = Cloud(store, TWO_JOBS)
    sent = {job.job: job for job in cloud.dispatcher.history}
    assert set(sent) == {"a", "b"}
    for job in sent.values():
        assert job.attempt_key == keys.attempt_key(job.run_id, job.job, job.attempt, job.index)
    assert sent["a"].attempt_key != sent["b"].attempt_key
    assert keys.to_text() not in json.dumps([job.to_payload() for job in sent.values()])


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param(lambda job: _report(job), id="success with an output"),
        pytest.param(lambda job: _report(job, StatusName.FAILED, error="forged"), id="failed"),
        pytest.param(
            lambda job: StatusEvent(
                run_id=job.run_id, workflow=job.workflow, status=StatusName.CANCEL_REQUESTED, attempt=1
            ),
            id="cancel_requested",
        ),
        pytest.param(
            lambda job: _report(job).signed_by_control(StatusKeys.generate()), id="signed with another key"
        ),
    ],
)
def test_a_status_put_on_the_bus_changes_nothing_and_is_recorded_rejected(
    store: MongoStore, forged: Any
) -> None:
    cloud = Cloud(store, TWO_JOBS)
    before = cloud.run()
    dispatched = len(cloud.dispatcher.history)
    status = forged(cloud.dispatcher.history[0])

    outcome = cloud.deliver(status)

    assert outcome.action == "rejected"
    _unchanged(cloud, before)
    assert len(cloud.dispatcher.history) == dispatched
    [rejection] = cloud.rejections()
    assert rejection["error"].startswith(f"rejected '{status.key}': ")
    # A redelivery of the same forgery records nothing more.
    assert cloud.deliver(status).action == "rejected"
    assert len(cloud.rejections()) == 1


def test_an_approval_put_on_the_bus_does_not_approve(store: MongoStore) -> None:
    cloud = Cloud(store, APPROVING)
    before = cloud.run()
    assert before["jobs"]["sign_off"]["state"] == "waiting"
    answer = StatusEvent(
        run_id=cloud.run_id,
        workflow="gate",
        status=StatusName.APPROVED,
        phase="p",
        job="sign_off",
        attempt=1,
        output={"approved_by": "mallory"},
    )

    assert cloud.deliver(answer).action == "rejected"

    _unchanged(cloud, before)
    # The operator's answer, signed by the operator's store, still goes through.
    assert cloud.deliver(answer.signed_by_control(store.keys)).action != "rejected"  # type: ignore[arg-type]
    assert cloud.run()["jobs"]["sign_off"]["state"] == "succeeded"


def test_the_reconciler_does_not_apply_a_status_written_straight_into_the_collection(
    store: MongoStore, job_store: MongoStore
) -> None:
    cloud = Cloud(store, TWO_JOBS)
    before = cloud.run()
    job = cloud.dispatcher.history[0]
    assert job_store.record_status(_report(job))  # a job's credential may insert statuses

    report = Reconciler(store=store, dispatcher=cloud.dispatcher, stale_after=timedelta(0)).reconcile_run(
        cloud.run_id
    )

    assert report.statuses_applied == 0
    _unchanged(cloud, before)
    assert len(cloud.rejections()) == 1


def test_the_notifier_does_not_report_a_forged_status(store: MongoStore) -> None:
    published: list[str] = []

    class Collect:
        def publish(self, subject: str, message: str) -> None:
            published.append(subject)

    notifier = NotifierService(notifiers=[Collect()], store=store, claims=store)
    forged = StatusEvent(run_id="r", workflow="pair", status=StatusName.WORKFLOW_FAILED, error="boom")
    database, collection = store.settings.database, store.settings.statuses_collection

    assert notifier.handle(envelope(forged.to_document(_now()), database, collection)) is None
    assert published == []
    signed = forged.signed_by_control(store.keys)  # type: ignore[arg-type]
    assert notifier.handle(envelope(signed.to_document(_now()), database, collection)) is not None
    assert len(published) == 1


# -- T2: a job's code with everything its function has -------------------------------------------


def _sent(cloud: Cloud, name: str) -> JobEvent:
    return next(job for job in cloud.dispatcher.history if job.job == name)


def test_an_attempts_key_signs_only_its_own_reports(store: MongoStore) -> None:
    cloud = Cloud(store, TWO_JOBS)
    other_run = Cloud(store, TWO_JOBS)
    other_workflow = Cloud(store, APPROVING)
    a, b = _sent(cloud, "a"), _sent(cloud, "b")
    key = a.attempt_key
    assert key is not None
    before = cloud.run()

    forgeries = {
        "another job": (cloud, _report(b)),
        "another attempt": (cloud, _report(replace(a, attempt=2))),
        "an item": (cloud, _report(replace(a, index=0))),
        "another run": (other_run, _report(replace(a, run_id=other_run.run_id))),
        "another workflow": (
            other_workflow,
            _report(replace(a, run_id=other_workflow.run_id, workflow="gate", phase="p", job="sign_off")),
        ),
    }
    for what, (target, status) in forgeries.items():
        assert target.deliver(status.signed_by_attempt(key)).action == "rejected", what
    assert other_workflow.run()["jobs"]["sign_off"]["state"] == "waiting"
    assert other_run.run()["jobs"]["a"]["state"] == "dispatched"
    for operation in (
        StatusEvent(run_id=cloud.run_id, workflow="pair", status=StatusName.CANCEL_REQUESTED, attempt=1),
        StatusEvent(run_id=cloud.run_id, workflow="pair", status=StatusName.REDRIVE_REQUESTED, attempt=1),
        StatusEvent(run_id=cloud.run_id, workflow="pair", status=StatusName.WORKFLOW_STARTED),
    ):
        assert cloud.deliver(operation.signed_by_attempt(key)).action == "rejected", operation.status
    _unchanged(cloud, before)

    # Its own report, through the real job wrapper, still works.
    assert cloud.deliver(_report(a).signed_by_attempt(key)).action != "rejected"
    assert cloud.run()["jobs"]["a"]["state"] == "succeeded"


def test_a_job_cannot_take_another_attempts_place_first(store: MongoStore, job_store: MongoStore) -> None:
    """A terminal report with the attempt's id and unique key, written by a job without that
    attempt's key, would otherwise make the attempt's own report a duplicate, lost."""
    cloud = Cloud(store, TWO_JOBS)
    a = _sent(cloud, "a")
    for squatter in (_report(a), _report(a, StatusName.STARTED)):
        assert job_store.record_status(squatter)
    guess = StatusKeys.generate().attempt_key(a.run_id, "a", 1, None)
    assert job_store.record_status(
        replace(_report(a, StatusName.FAILED, error="x"), slot=attempt_slot(guess))
    )

    result = run_attempt(job_store, lambda event, context: {"real": True}, a.to_payload(), None, "req-1")

    assert result.outcome == "success"
    ends = ("success", "failed", "not_run")
    [end] = [s for s in store.run_statuses(cloud.run_id) if s["status"] in ends and s.get("auth")]
    assert end["status"] == "success"
    assert end["output"] == {"real": True}
    assert cloud.deliver(_status_from(end)).action != "rejected"
    assert cloud.run()["jobs"]["a"]["state"] == "succeeded"


def _status_from(document: dict[str, Any]) -> StatusEvent:
    return status_from_document(document)


def test_the_users_handler_never_sees_the_attempts_key(store: MongoStore, job_store: MongoStore) -> None:
    cloud = Cloud(store, TWO_JOBS)
    a = _sent(cloud, "a")
    seen: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(event)
        return {}

    run_attempt(job_store, handler, a.to_payload(), None, "req-1")
    assert len(seen) == 1
    assert "attempt_key" not in seen[0]
    assert str(a.attempt_key) not in json.dumps(seen[0])


def test_an_output_whose_doubles_the_trigger_prints_as_integers_still_verifies(store: MongoStore) -> None:
    cloud = Cloud(store, TWO_JOBS)
    a = _sent(cloud, "a")
    assert a.attempt_key is not None
    signed = _report(a, output={"whole": 2.0, "half": 0.5, "list": [1.0, 3]}).signed_by_attempt(a.attempt_key)
    document = signed.to_document(_now())
    document["output"] = json.loads(json.dumps(document["output"]).replace("2.0", "2").replace("1.0", "1"))
    assert isinstance(document["output"]["whole"], int)
    outcome = cloud.orchestrator.handle(
        envelope(document, store.settings.database, store.settings.statuses_collection)
    )
    assert outcome.action != "rejected"


# -- T5: authentication keeps every fault guarantee ----------------------------------------------


def test_authentic_statuses_delivered_three_times_change_nothing(store: MongoStore) -> None:
    outcome = Driver(store, MIXED, handlers=MIXED_HANDLERS, faults=Faults(duplicate=3)).run(
        run_input={"cheap": True}
    )
    _check_same_as_fault_free(store, outcome, run_input={"cheap": True})
    assert outcome.count("status_rejected") == 0


@pytest.mark.parametrize("seed", range(3))
def test_authentic_statuses_shuffled_with_crashes_change_nothing(store: MongoStore, seed: int) -> None:
    faults = Faults(duplicate=2, shuffle=True, seed=seed, crash_plan=partial(CrashAtStep, 2 + seed))
    outcome = Driver(store, MIXED, handlers=MIXED_HANDLERS, faults=faults).run()
    _check_same_as_fault_free(store, outcome)
    assert outcome.count("status_rejected") == 0


def test_a_replayed_authentic_report_of_an_earlier_attempt_changes_nothing(store: MongoStore) -> None:
    cloud = Cloud(store, TWO_JOBS)
    a = _sent(cloud, "a")
    assert a.attempt_key is not None
    failed = _report(a, StatusName.FAILED, error="first try").signed_by_attempt(a.attempt_key)
    cloud.deliver(failed)
    retried = cloud.run()["jobs"]["a"]
    assert retried["attempt"] == 2
    cloud.deliver(failed)
    assert cloud.run()["jobs"]["a"] == retried
    assert cloud.rejections() == []


# -- where the key comes from ---------------------------------------------------------------------


def test_a_local_control_plane_and_the_cli_on_its_database_share_one_key(store: MongoStore) -> None:
    plain = store.with_keys(None)
    first = local_keys(plain)
    assert local_keys(plain) == first
    assert operator_keys(plain, {}) == first
    given = StatusKeys.generate()
    assert operator_keys(plain, {contracts.OPERATOR_STATUS_KEY: given.to_text()}) == given


def test_a_bad_operator_key_is_a_clear_error(store: MongoStore) -> None:
    with pytest.raises(
        StoreError, match="WORKFLOWS_STATUS_KEY: not a status signing key of 64 or more hex digits"
    ):
        operator_keys(store, {contracts.OPERATOR_STATUS_KEY: "not-hex"})


def test_the_orchestrator_function_refuses_to_start_without_its_key(mongo_uri: str, monkeypatch: Any) -> None:
    from runtime.handlers import orchestrator as handler

    monkeypatch.delenv(contracts.STATUS_KEY_SECRET_ARN, raising=False)
    monkeypatch.setenv(contracts.MONGODB_URI, mongo_uri)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(StoreError, match="STATUS_KEY_SECRET_ARN is not set"):
        handler._build()


def test_a_key_never_shows_in_a_repr() -> None:
    keys = StatusKeys.generate()
    assert keys.to_text() not in repr(keys)
    assert keys.to_text() not in str(keys)


def test_a_rejection_shows_in_the_runs_history(store: MongoStore) -> None:
    cloud = Cloud(store, TWO_JOBS)
    forged = _report(_sent(cloud, "a"))
    cloud.deliver(forged)

    [entry] = [e for e in run_history(store, cloud.run_id) if e.status == StatusName.STATUS_REJECTED]

    assert entry.error == f"rejected '{forged.key}': it is not signed"


def test_a_forged_on_failure_record_does_not_fail_another_attempt(store: MongoStore) -> None:
    """Every job function may invoke the orchestrator (it is their on-failure destination): a job
    sending a record of its own for another attempt must not fail it. Lambda's own records carry
    the invoked event, and so the attempt's key."""
    cloud = Cloud(store, TWO_JOBS)
    a, b = _sent(cloud, "a"), _sent(cloud, "b")
    record = json.loads((EVENTS / "lambda-async-on-failure.record.json").read_text())
    before = cloud.run()

    for forged in (
        {**b.to_payload(), "attempt_key": a.attempt_key},
        replace(b, attempt_key=None).to_payload(),
    ):
        record["requestPayload"] = forged
        assert cloud.orchestrator.handle(record).action == "rejected"
    _unchanged(cloud, before)
    assert len(cloud.rejections()) == 1  # the same attempt's forgeries, recorded once

    record["requestPayload"] = b.to_payload()  # Lambda's own record of b's invocation
    assert cloud.orchestrator.handle(record).action == "recorded"
    [failed] = [s for s in store.run_statuses(cloud.run_id) if s["job"] == "b" and s["status"] == "failed"]
    assert cloud.deliver(_status_from(failed)).action != "rejected"
    assert cloud.run()["jobs"]["b"]["attempt"] == 2


def test_a_forged_report_does_not_hide_a_lost_attempt_from_the_reconciler(
    store: MongoStore, job_store: MongoStore
) -> None:
    """A job's code inserting another attempt's ``started`` (or end) must not make the reconciler
    take that attempt, whose invocation was lost, for one that reported."""
    cloud = Cloud(store, TWO_JOBS)
    b = _sent(cloud, "b")
    assert job_store.record_status(_report(b, StatusName.STARTED))
    cloud.dispatcher.drain()

    report = Reconciler(
        store=store,
        dispatcher=cloud.dispatcher,
        stale_after=timedelta(0),
        lost_invocation_after=lambda job: timedelta(0),
    ).reconcile_run(cloud.run_id)

    assert report.redispatched == 2  # a's and b's invocations: neither reported authentically
    assert sorted(event.job for event in cloud.dispatcher.drain()) == ["a", "b"]
