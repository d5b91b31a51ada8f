"""The synthesized stacks of an app whose order workflow runs shipping as a child: the order's
orchestrator and reconciler may invoke shipping's starter (the child's entry point) and no other
function, no job function is made for the child workflow job, and the child workflow's own
stack gets no such right."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack

from runtime.definition.loader import load_workflows
from tests.cdk_fixtures import synthesize, templates_of
from tests.test_constructs_workflow import all_functions, policy_statements

SPECS = Path(__file__).parent / "specs" / "children"


@pytest.fixture(scope="module")
def templates() -> dict[str, dict[str, dict[str, Any]]]:
    _, built = synthesize(load_workflows([SPECS]))
    return {name: templates_of(Stack.of(construct)) for name, construct in built.workflows.items()}


def _child_statements(templates: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        statement
        for template in templates.values()
        for statement in policy_statements(template)
        if statement.get("Sid") == "StartChildRuns"
    ]


def test_the_parents_orchestrator_and_reconciler_may_start_the_childs_runs(templates):
    statements = _child_statements(templates["order"])
    assert len(statements) == 2  # the orchestrator's and the reconciler's
    for statement in statements:
        assert statement["Action"] == "lambda:InvokeFunction"
        (resource,) = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        assert json.dumps(resource).endswith(':function:shipping-starter"]]}')


def test_the_child_workflow_job_has_no_function_and_the_child_starts_nothing(templates):
    functions = all_functions(templates["order"])
    assert "order-job-reserve_stock" in functions
    assert "order-job-ship" not in functions
    assert _child_statements(templates["shipping"]) == []
