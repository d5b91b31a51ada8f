"""The test kit with child workflows: a job that runs a child workflow runs it for real (its spec
beside the tested one, or given in ``children``), a child's job is faked and counted as
``<workflow>.<job>``, and a fake for the child workflow job itself stands for the child run.
The specs are the README's order and shipping (``tests/specs/children``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdk_app.testkit import Faults, WorkflowTest, raises, returns, sequence
from runtime.definition.loader import load_workflow
from tests.test_testkit import opened

__all__ = ["opened"]  # the fixture this module shares

SPECS = Path(__file__).parent / "specs" / "children"
ORDER = {"order_id": "A1", "address": "1 Main St"}


def _open(
    opened: list[WorkflowTest], mongo_uri: str, spec: Any = SPECS / "order.yaml", **options: Any
) -> WorkflowTest:
    test = WorkflowTest(spec, mongo_uri, **options)
    opened.append(test)
    return test


def _child_runs(test: WorkflowTest) -> list[str]:
    run_id = test.run_id
    assert run_id is not None
    return sorted(
        document["_id"]
        for document in test._store.runs.find({"_id": {"$regex": f"^{run_id}\\."}}, {"_id": 1})
    )


@pytest.mark.parametrize(
    "faults", [Faults(), Faults(duplicate=2, reorder=True, seed=7)], ids=["in-order", "faulty"]
)
def test_the_child_workflow_beside_the_spec_runs_for_real(opened, mongo_uri, faults) -> None:
    order = _open(opened, mongo_uri, faults=faults)

    order.start(ORDER)
    report = order.run_until_idle()

    order.assert_run("succeeded", jobs={"ship": "succeeded", "bill": "succeeded"})
    assert report.job("ship").output == {"tracking": "TRK-A1"}
    assert _child_runs(order) == [f"{order.run_id}.ship.1"]
    assert order.executions("shipping.book_carrier") == 1
    assert order.get(f"{order.run_id}.ship.1").status == "succeeded"


def test_a_child_workflows_job_is_faked_by_its_qualified_name(opened, mongo_uri) -> None:
    order = _open(opened, mongo_uri, fakes={"shipping.book_carrier": returns({"tracking": "FAKE"})})

    order.start(ORDER)
    report = order.run_until_idle()

    assert report.job("ship").output == {"tracking": "FAKE"}
    assert order.calls["shipping.book_carrier"][0]["input"] == {"order_id": "A1", "address": "1 Main St"}


def test_a_fake_for_the_child_workflow_job_stands_for_the_child_run(opened, mongo_uri) -> None:
    order = _open(
        opened,
        mongo_uri,
        spec=load_workflow(SPECS / "order.yaml"),  # no spec beside it: the fake needs none
        fakes={"ship": sequence(raises(RuntimeError("no carrier")), returns({"tracking": "T-2"}))},
    )

    order.start(ORDER)
    report = order.run_until_idle()

    order.assert_run("succeeded", jobs={"ship": "succeeded"})
    ship = report.job("ship")
    assert (ship.attempts, ship.output) == (2, {"tracking": "T-2"})
    first = [entry for entry in order.history() if entry.job == "ship" and entry.status == "failed"]
    assert len(first) == 1
    assert first[0].error is not None
    assert first[0].error.startswith("ChildWorkflowFailed: ")
    assert "RuntimeError: no carrier" in first[0].error
    assert [call["input"] for call in order.calls["ship"]] == [ORDER, ORDER]
    assert _child_runs(order) == []


def test_a_child_spec_is_given_in_children(opened, mongo_uri) -> None:
    order = _open(
        opened,
        mongo_uri,
        spec=load_workflow(SPECS / "order.yaml"),
        children={"shipping": SPECS / "shipping.yaml"},
    )

    order.start(ORDER)

    assert order.run_until_idle().job("ship").output == {"tracking": "TRK-A1"}


def test_a_child_without_a_spec_or_a_fake_is_a_clear_error(mongo_uri) -> None:
    with pytest.raises(
        ValueError, match="runs child workflow 'shipping', whose spec is neither in children="
    ):
        WorkflowTest(load_workflow(SPECS / "order.yaml"), mongo_uri)
    with pytest.raises(ValueError, match=r"children\['shipping'\] is the spec of workflow 'order'"):
        WorkflowTest(SPECS / "order.yaml", mongo_uri, children={"shipping": SPECS / "order.yaml"})
    with pytest.raises(ValueError, match="did you mean 'shipping.book_carrier'"):
        WorkflowTest(SPECS / "order.yaml", mongo_uri, fakes={"shipping.book_carier": {}})
