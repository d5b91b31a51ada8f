"""Child workflows (docs/spec.md, "Child workflows"): a job that runs another workflow of the app
as its attempt, against the real orchestrator, job wrapper, starter service and reconciler on a
real server, with signed statuses, under duplicated, reordered and lost deliveries."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pymongo
import pytest
from botocore.stub import Stubber

from cdk_app.console.views import run_json
from cdk_app.graph import calls
from cdk_app.local.delivery import FaultSettings
from cdk_app.local.runner import LocalRunner, RunOptions
from cdk_app.local.timeouts import timed_out_attempts
from runtime import limits
from runtime.aws.children import LambdaChildStarter
from runtime.clock import utcnow
from runtime.definition.loader import check_specs, load_workflows
from runtime.definition.model import ChildWorkflow, Workflow
from runtime.documents.children import ChildStart, ParentLink
from runtime.documents.signatures import StatusKeys
from runtime.errors import OperationRefused
from runtime.handlers import starter
from runtime.handlers.job import stub_handler
from runtime.ports import InvocationRefused
from runtime.service.children import start_child
from runtime.service.operations import request_cancel, request_redrive
from runtime.service.run_view import RunReport, summarize
from runtime.service.runs import start_run
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.child_harness import (
    HANDLERS,
    SHIPPING,
    SPECS,
    App,
    failing,
    order,
    run_until_child_waits,
)
from tests.engine_harness import workflow


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    """The control plane's store: it signs what it records and checks what it applies."""
    store = MongoStore(mongo_client, store_settings, StatusKeys.generate())
    store.ensure_indexes()
    return store


def test_the_childs_output_is_the_jobs_output_and_both_runs_are_linked(store: MongoStore) -> None:
    app = App(store, [order(), SHIPPING])
    run_id = app.start("order-1", {"order_id": "A7"})
    parent = app.run(run_id)
    assert parent["status"] == "succeeded"
    shipped = {"tracking": "TRACK-A7-3", "order": "A7"}
    assert parent["jobs"]["ship"]["output"] == shipped
    assert parent["jobs"]["bill"]["output"] == {"billed": shipped}
    (child,) = app.children_of(run_id)
    assert child["_id"] == "order-1.ship.1"
    assert child["status"] == "succeeded"
    assert child["input"] == {"order_id": "A7", "weight": 3}
    assert child["parent"] == {
        "runId": run_id,
        "workflow": "order",
        "phase": "take",
        "job": "ship",
        "attempt": 1,
    }
    (started,) = app.statuses(run_id, "started", "ship")
    assert started["requestId"] == child["_id"]
    assert started["auth"]["by"] == "control"


def test_status_and_the_console_link_the_parent_and_the_child(store: MongoStore) -> None:
    app = App(store, [order(), SHIPPING])
    run_id = app.start("order-13", {"order_id": "R7"})
    parent_report, child_report = summarize(store, run_id), summarize(store, "order-13.ship.1")
    assert parent_report is not None
    assert child_report is not None
    assert parent_report.to_json()["jobs"]["ship"]["child"] == "order-13.ship.1"
    assert "child" not in parent_report.to_json()["jobs"]["bill"]
    assert child_report.to_json()["parent"] == {
        "run_id": run_id,
        "workflow": "order",
        "job": "ship",
        "attempt": 1,
    }
    assert RunReport.from_json(child_report.to_json()).parent == child_report.parent
    parent_run, child_run = store.read_run(run_id), store.read_run("order-13.ship.1")
    assert parent_run is not None
    assert child_run is not None
    ship = next(job for job in run_json(parent_run, [], False)["phases"][0]["jobs"] if job["name"] == "ship")
    assert (ship["kind"], ship["child"]) == (
        "workflow",
        {"workflow": "shipping", "run_id": "order-13.ship.1"},
    )
    assert run_json(child_run, [], False)["parent"] == {"run_id": run_id, "workflow": "order", "job": "ship"}


def test_without_an_output_expression_the_child_gives_its_last_phases_results(store: MongoStore) -> None:
    plain = workflow("shipping", {"pack": {"pick": {}}, "send": {"book_carrier": {}, "label": {}}})
    app = App(store, [order(), plain])
    run_id = app.start("order-2", {"order_id": "B1"})
    assert app.run(run_id)["jobs"]["ship"]["output"] == {
        "book_carrier": {"tracking": "TRACK-B1-3"},
        "label": {"job": "label", "stub": True},
    }


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_duplicated_and_reordered_deliveries_start_one_child(store: MongoStore, seed: int) -> None:
    app = App(store, [order(), SHIPPING], duplicate=2, shuffle=True, seed=seed)
    run_id = app.start(f"order-dup-{seed}", {"order_id": "C3"})
    assert app.run(run_id)["status"] == "succeeded"
    assert [child["_id"] for child in app.children_of(run_id)] == [f"order-dup-{seed}.ship.1"]
    assert app.executions["book_carrier"] == 1
    assert app.executions["bill"] == 1
    assert len(app.statuses(run_id, "success", "ship")) == 1


def test_a_failed_child_fails_the_attempt_and_the_retry_starts_a_new_child(store: MongoStore) -> None:
    app = App(
        store,
        [order(retries=1), SHIPPING],
        handlers={**HANDLERS, "book_carrier": failing("book_carrier", 1)},
    )
    run_id = app.start("order-3", {"order_id": "D4"})
    parent = app.run(run_id)
    assert parent["status"] == "succeeded"
    assert parent["jobs"]["ship"]["attempt"] == 2
    children = {child["_id"]: child["status"] for child in app.children_of(run_id)}
    assert children == {"order-3.ship.1": "failed", "order-3.ship.2": "succeeded"}
    (failed,) = app.statuses(run_id, "failed", "ship")
    assert failed["error"].startswith(
        "ChildWorkflowFailed: child run order-3.ship.1 of workflow 'shipping' failed"
    )
    assert "book_carrier broke" in failed["error"]


def test_a_child_that_fails_for_good_fails_the_parent(store: MongoStore) -> None:
    app = App(
        store,
        [order(retries=0), SHIPPING],
        handlers={**HANDLERS, "book_carrier": failing("book_carrier", 9)},
    )
    run_id = app.start("order-4", {"order_id": "E5"})
    parent = app.run(run_id)
    assert (parent["status"], parent["jobs"]["ship"]["state"], parent["jobs"]["bill"]["state"]) == (
        "failed",
        "failed",
        "upstream_failed",
    )
    (child,) = app.children_of(run_id)
    assert child["status"] == "failed"


def test_a_cancelled_child_fails_the_attempt(store: MongoStore) -> None:
    app = App(store, [order(retries=0), SHIPPING])
    start_run(store, app.definitions["order"], run_id="order-6", input={"order_id": "G7"})
    run_until_child_waits(app, "order-6")
    request_cancel(store, "order-6.ship.1", "carrier strike")
    app.settle()
    assert app.run("order-6.ship.1")["status"] == "cancelled"
    parent = app.run("order-6")
    assert parent["status"] == "failed"
    assert parent["jobs"]["ship"]["error"].endswith(
        "ChildWorkflowCancelled: child run order-6.ship.1 of workflow 'shipping' was cancelled: "
        "carrier strike"
    )


def test_cancelling_the_parent_cancels_its_child_and_both_end_cancelled(store: MongoStore) -> None:
    app = App(store, [order(retries=0), SHIPPING])
    start_run(store, app.definitions["order"], run_id="order-7", input={"order_id": "H8"})
    run_until_child_waits(app, "order-7")
    request_cancel(store, "order-7", "customer changed their mind")
    app.settle()
    parent, child = app.run("order-7"), app.run("order-7.ship.1")
    assert (parent["status"], parent["jobs"]["ship"]["state"]) == ("cancelled", "cancelled")
    assert child["status"] == "cancelled"
    assert "its parent run order-7 was cancelled" in child["error"]
    assert app.executions.get("bill", 0) == 0


def test_a_lost_child_start_is_repaired_by_the_reconciler_without_a_duplicate(store: MongoStore) -> None:
    app = App(store, [order(), SHIPPING], lose_starts=1)
    run_id = app.start("order-8", {"order_id": "J9"})
    assert app.run(run_id)["jobs"]["ship"]["state"] == "dispatched"
    assert app.children_of(run_id) == []
    report = app.reconciler().reconcile_run(run_id)
    assert report.redispatched == 1
    app.settle()
    # A second pass finds nothing lost: the attempt has reported, the child runs once.
    assert app.reconciler().reconcile_run(run_id).redispatched == 0
    app.settle()
    assert app.run(run_id)["status"] == "succeeded"
    assert [child["_id"] for child in app.children_of(run_id)] == ["order-8.ship.1"]
    assert app.executions["book_carrier"] == 1


def test_a_childs_lost_report_to_its_parent_is_repaired_by_the_reconciler(store: MongoStore) -> None:
    app = App(store, [order(), SHIPPING])
    start_run(store, app.definitions["order"], run_id="order-9", input={"order_id": "K1"})
    run_until_child_waits(app, "order-9")
    # The child runs to its end, but its report to the parent is lost before anyone sees it.
    for _ in range(50):
        app.step()
        lost = app.store.statuses.find_one_and_delete(
            {"runId": "order-9", "job": "ship", "status": "success"}
        )
        if lost is not None:
            break
    assert app.run("order-9.ship.1")["status"] == "succeeded"
    app.settle()
    assert app.run("order-9")["jobs"]["ship"]["state"] == "dispatched"
    app.reconciler().reconcile_run("order-9")
    app.settle()
    assert app.run("order-9")["status"] == "succeeded"
    assert app.run("order-9")["jobs"]["ship"]["output"] == {"tracking": "TRACK-K1-3", "order": "K1"}


def test_a_child_input_that_cannot_be_evaluated_fails_the_attempt(store: MongoStore) -> None:
    broken = workflow(
        "order",
        {
            "take": {
                "ship": {"retries": 0, "child_workflow": ChildWorkflow(name="shipping", input="abs(input)")}
            }
        },
    )
    app = App(store, [broken, SHIPPING])
    start_run(store, broken, run_id="order-10", input={"order_id": "L2"})
    app.settle()
    parent = app.run("order-10")
    assert parent["status"] == "failed"
    assert "the input of child workflow 'shipping' failed" in parent["jobs"]["ship"]["error"]
    assert app.children_of("order-10") == []


BIG_STOCK: dict[str, Any] = {"weight": 3, "pad": "x" * limits.OUTPUT_INLINE_MAX_BYTES}
"""An output too large for an event: kept by reference."""
BIG_HANDLERS = {**HANDLERS, "reserve_stock": lambda event, context: BIG_STOCK}


def test_a_child_input_reads_an_output_kept_by_reference(store: MongoStore) -> None:
    app = App(
        store, [order(), SHIPPING], handlers={**HANDLERS, "reserve_stock": lambda event, context: BIG_STOCK}
    )
    run_id = app.start("order-11", {"order_id": "B1"})

    (child,) = app.children_of(run_id)
    assert app.run(run_id)["jobs"]["reserve_stock"].get("outputRef")
    assert child["input"] == {"order_id": "B1", "weight": 3}
    assert app.run(run_id)["status"] == "succeeded"


def test_a_child_input_that_reads_too_much_kept_by_reference_fails_the_attempt(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "OUTPUT_READ_MAX_BYTES", 1000)
    app = App(
        store, [order(), SHIPPING], handlers={**HANDLERS, "reserve_stock": lambda event, context: BIG_STOCK}
    )
    run_id = app.start("order-12", {"order_id": "B2"})

    parent = app.run(run_id)
    assert parent["status"] == "failed"
    error = parent["jobs"]["ship"]["error"]
    assert "the input of child workflow 'shipping' reads the output of 'reserve_stock'" in error
    assert "it may read at most 1,000 bytes of outputs kept by reference" in error
    assert app.children_of(run_id) == []


def test_a_child_start_without_its_attempts_key_is_refused(store: MongoStore) -> None:
    app = App(store, [order(), SHIPPING])
    start_run(store, app.definitions["order"], run_id="order-11", input={"order_id": "M3"})
    run_until_child_waits(app, "order-11")
    child = app.store.read_run("order-11.ship.1")
    assert child is not None
    assert child.parent is not None
    forged = ChildStart(
        workflow="shipping",
        input={"order_id": "M3"},
        parent=replace(child.parent, attempt=2),
        attempt_key=store.keys.attempt_key("order-11", "ship", 1, None),  # type: ignore[union-attr]
    )
    with pytest.raises(OperationRefused, match="only with the key that attempt was dispatched with"):
        start_child(store, SHIPPING, forged)
    assert store.load_run("order-11.ship.2") is None


def test_the_example_specs_load_with_their_child_workflow_job_and_output() -> None:
    order_spec, shipping_spec = sorted(load_workflows([SPECS]), key=lambda w: w.name)
    ship = order_spec.job("ship")
    assert ship.child_workflow == ChildWorkflow(
        name="shipping", input="{order_id: input.order_id, address: input.address}"
    )
    assert not ship.runs_code
    assert calls(ship) == "workflow shipping"  # what graph and the console's badge show
    assert shipping_spec.output == "{tracking: results.book_carrier.tracking}"
    assert Workflow.from_document(order_spec.to_document()).job("ship").child_workflow == ship.child_workflow


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


def test_validate_refuses_an_unknown_workflow_and_a_cycle(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "a.yaml",
        "workflow: alpha\nphases:\n  p:\n    jobs:\n      call_beta: {workflow: {name: beta}}\n",
    )
    _write(
        tmp_path,
        "b.yaml",
        "workflow: beta\nphases:\n  p:\n    jobs:\n      call_alpha: {workflow: {name: alpha}}\n",
    )
    _write(
        tmp_path,
        "c.yaml",
        "workflow: gamma\nphases:\n  p:\n    jobs:\n      ship: {workflow: {name: shiping}}\n",
    )
    lines = sorted(str(problem) for problem in check_specs([tmp_path]).problems)
    assert len(lines) == 3
    assert lines[0].endswith(
        "a.yaml: $.phases.p.jobs.call_beta.workflow.name: job 'call_beta' runs workflow 'beta', and the "
        "workflows call each other in a cycle (alpha -> beta -> alpha): a run would start child runs for "
        "ever; break the cycle"
    )
    assert "b.yaml: $.phases.p.jobs.call_alpha.workflow.name: " in lines[1]
    assert "(beta -> alpha -> beta)" in lines[1]
    assert lines[2].endswith(
        "c.yaml: $.phases.p.jobs.ship.workflow.name: job 'ship' runs workflow 'shiping', which no spec of "
        "this app defines (it knows: [alpha, beta, gamma])"
    )


def test_a_child_workflow_job_runs_no_code(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "a.yaml",
        "workflow: alpha\nphases:\n  p:\n    jobs:\n"
        "      ship: {workflow: {name: alpha, input: 'nope.x'}, wait: 5}\n",
    )
    lines = [str(problem) for problem in check_specs([tmp_path]).problems]
    assert any(
        "$.phases.p.jobs.ship.wait: a job that runs a child workflow runs no 'wait'" in line for line in lines
    )
    assert any("$.phases.p.jobs.ship.workflow.input: 'nope.x' reads 'nope'" in line for line in lines)


PARENT = ParentLink(run_id="order-12", workflow="order", phase="take", job="ship", attempt=2)


def test_the_child_workflows_starter_function_starts_the_child_and_reports_the_attempt_started(
    store: MongoStore, mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "definition.json").write_text(json.dumps(SHIPPING.to_document()))
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(tmp_path))
    monkeypatch.setenv("WORKFLOW_DEFINITION_FILE", "definition.json")
    monkeypatch.setenv("MONGODB_URI", mongo_uri)
    monkeypatch.setenv("MONGODB_DATABASE", store.settings.database)
    monkeypatch.setattr(starter, "_state", {})
    request = ChildStart(workflow="shipping", input={"order_id": "N4"}, parent=PARENT).to_payload()

    assert starter.handler(request, None) == {"run_id": "order-12.ship.2", "created": True}
    assert starter.handler(request, None) == {"run_id": "order-12.ship.2", "created": False}
    assert store.read_run("order-12.ship.2").parent == PARENT  # type: ignore[union-attr]
    assert [s["requestId"] for s in store.run_statuses("order-12") if s["status"] == "started"] == [
        "order-12.ship.2"
    ]
    wrong = starter.handler({**request, "workflow": "billing"}, None)
    assert wrong["error"] == "this starter starts runs of 'shipping', not 'billing'"
    assert "needs the parent attempt" in starter.handler({**request, "parent": None}, None)["error"]


def _lambda_client() -> Any:
    return boto3.client("lambda", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_the_cloud_starts_a_child_by_invoking_the_child_workflows_starter_asynchronously() -> None:
    request = ChildStart(workflow="shipping", input={"order_id": "P5"}, parent=PARENT, attempt_key="ab" * 32)
    client = _lambda_client()
    with Stubber(client) as stub:
        stub.add_response(
            "invoke",
            {"StatusCode": 202},
            {
                "FunctionName": "shipping-starter",
                "InvocationType": "Event",
                "Payload": json.dumps(request.to_payload()).encode(),
            },
        )
        LambdaChildStarter(client).start_child(request)
        stub.assert_no_pending_responses()
    with Stubber(client) as stub:
        stub.add_client_error("invoke", "ResourceNotFoundException", "not found")
        with pytest.raises(InvocationRefused, match="the starter of child workflow 'shipping'"):
            LambdaChildStarter(client).start_child(request)


class _Quiet:
    def status(self, event: Any) -> None:
        return None

    def notification(self, subject: str, message: str) -> None:
        return None


@pytest.mark.parametrize("faults", ["", "duplicate=2,reorder,crash=0.3"], ids=["plain", "faults"])
def test_the_local_runner_runs_the_child_with_the_run(store: MongoStore, faults: str) -> None:
    parent = order(retries=1)
    handlers = {job.name: HANDLERS.get(job.name, stub_handler) for job in parent.jobs()}
    child_handlers = {
        job.name: failing("book_carrier", 1)
        if job.name == "book_carrier"
        else HANDLERS.get(job.name, stub_handler)
        for job in SHIPPING.jobs()
    }
    runner = LocalRunner(
        store,
        parent,
        handlers,
        _Quiet(),
        RunOptions(faults=FaultSettings.parse(faults, seed=3), timeout=30),
        children=[(SHIPPING, child_handlers)],
    )
    report = runner.run({"order_id": "Q6"})
    assert report.status == "succeeded", report.error
    children = {child["_id"]: child["status"] for child in App(store, []).children_of(report.run_id)}
    assert children == {f"{report.run_id}.ship.1": "failed", f"{report.run_id}.ship.2": "succeeded"}
    assert store.read_run(report.run_id).jobs["ship"].output == {"tracking": "TRACK-Q6-3", "order": "Q6"}  # type: ignore[union-attr]


@pytest.mark.parametrize(("duplicate", "shuffle"), [(1, False), (2, True)], ids=["once", "duplicated"])
def test_a_redrive_of_the_parent_redrives_its_failed_child_rather_than_starting_another(
    store: MongoStore, duplicate: int, shuffle: bool
) -> None:
    handlers = {**HANDLERS, "book_carrier": failing("book_carrier", 1)}
    app = App(store, [order(retries=0), SHIPPING], handlers=handlers, duplicate=duplicate, shuffle=shuffle)
    run_id = app.start("order-14", {"order_id": "S8"})
    assert (app.run(run_id)["status"], app.run("order-14.ship.1")["status"]) == ("failed", "failed")

    request_redrive(store, run_id)
    app.settle()

    parent = app.run(run_id)
    assert (parent["status"], parent["jobs"]["ship"]["attempt"]) == ("succeeded", 2)
    assert parent["jobs"]["ship"]["output"] == {"tracking": "TRACK-S8-3", "order": "S8"}
    (child,) = app.children_of(run_id)
    assert (child["_id"], child["status"], child["redrives"]) == ("order-14.ship.1", "succeeded", 1)
    assert child["parent"]["attempt"] == 2
    assert app.executions["pick"] == 1  # the child went on from where it failed
    report = summarize(store, run_id)
    assert report is not None
    assert report.to_json()["jobs"]["ship"]["child"] == "order-14.ship.1"


def test_a_retry_after_a_redrive_starts_a_new_child(store: MongoStore) -> None:
    handlers = {**HANDLERS, "book_carrier": failing("book_carrier", 3)}
    app = App(store, [order(retries=1), SHIPPING], handlers=handlers)
    run_id = app.start("order-15", {"order_id": "T9"})
    assert app.run(run_id)["status"] == "failed"
    request_redrive(store, run_id)
    app.settle()
    # Attempt 3 redrove attempt 2's child (which failed again), attempt 4 started a new one.
    children = {
        child["_id"]: (child["status"], child["parent"]["attempt"]) for child in app.children_of(run_id)
    }
    assert children == {
        "order-15.ship.1": ("failed", 1),
        "order-15.ship.2": ("failed", 3),
        "order-15.ship.4": ("succeeded", 4),
    }
    assert app.run(run_id)["status"] == "succeeded"


def test_a_child_workflow_jobs_attempt_is_not_stopped_at_a_lambda_timeout_locally(store: MongoStore) -> None:
    """It runs no function: the dev server's stand-in for Lambda's timeout leaves it alone."""
    app = App(store, [order(), SHIPPING])
    start_run(store, app.definitions["order"], run_id="order-16", input={"order_id": "U1"})
    run_until_child_waits(app, "order-16")
    parent = store.read_run("order-16")
    assert parent is not None
    assert parent.jobs["ship"].state == "dispatched"
    assert timed_out_attempts(store, parent, utcnow() + timedelta(hours=1)) == []


def test_a_child_its_input_schema_refuses_fails_the_attempt_saying_why(store: MongoStore) -> None:
    strict = replace(
        SHIPPING, input_schema={"type": "object", "required": ["address"], "properties": {"address": {}}}
    )
    app = App(store, [order(retries=2), strict])
    run_id = app.start("order-17", {"order_id": "V2"})
    parent = app.run(run_id)
    assert (parent["status"], parent["jobs"]["ship"]["attempt"]) == ("failed", 3)
    assert (
        "ChildWorkflowFailed: child run order-17.ship.3 of workflow 'shipping' could not start"
        in (parent["jobs"]["ship"]["error"])
    )
    assert "address" in parent["jobs"]["ship"]["error"]
    assert app.children_of(run_id) == []
    # Nothing is left for the reconciler to start again: every attempt has reported its end.
    assert app.reconciler().reconcile_run(run_id).redispatched == 0
