"""``delivery`` rendered: with ``fast`` every job function names the orchestrator it hands its
reports to; with ``economy`` none does. The spec's value wins over the context's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import Stack

from cdk_app.config import AppConfig
from constructs.workflow import Workflow, function_name
from runtime import contracts
from runtime.definition.model import job_function_name
from tests.cdk_fixtures import catch_the_fish, logical_id, resources_of_type, synthesize, templates_of

WORKFLOW = "catch_the_fish"
ORCHESTRATOR = function_name(WORKFLOW, "orchestrator")


def _rendered(spec_delivery: str | None, context_delivery: str) -> tuple[Workflow, dict[str, dict[str, Any]]]:
    _, built = synthesize([catch_the_fish(delivery=spec_delivery)], AppConfig(delivery=context_delivery))
    construct = built.workflows[WORKFLOW]
    return construct, templates_of(Stack.of(construct))


def _job_environments(templates: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        resource["Properties"]["FunctionName"]: resource["Properties"]["Environment"]["Variables"]
        for template in templates.values()
        for resource in resources_of_type(template, "AWS::Lambda::Function").values()
        if resource["Properties"]["FunctionName"].startswith(f"{WORKFLOW}-job-")
    }


@pytest.mark.parametrize(
    ("spec_delivery", "context_delivery", "expected"),
    [
        (None, "fast", "fast"),
        (None, "economy", "economy"),
        ("fast", "economy", "fast"),
        ("economy", "fast", "economy"),
    ],
)
def test_the_spec_wins_over_the_context(spec_delivery, context_delivery, expected):
    construct, templates = _rendered(spec_delivery, context_delivery)

    assert construct.delivery == expected
    environments = _job_environments(templates)
    assert set(environments) == {job_function_name(WORKFLOW, job.name) for job in catch_the_fish().jobs()}
    named = {environment.get(contracts.ORCHESTRATOR_FUNCTION) for environment in environments.values()}
    assert named == ({ORCHESTRATOR} if expected == "fast" else {None})


def test_the_orchestrator_knows_its_workflow_to_refuse_anothers_hand_offs():
    _, templates = _rendered("fast", "fast")
    functions = {
        resource["Properties"]["FunctionName"]: resource["Properties"]
        for template in templates.values()
        for resource in resources_of_type(template, "AWS::Lambda::Function").values()
    }
    assert functions[ORCHESTRATOR]["Environment"]["Variables"][contracts.WORKFLOW_NAME] == WORKFLOW


def test_a_fast_job_may_invoke_its_workflows_orchestrator_and_no_other_function():
    """The job role's invoke on the orchestrator is CDK's grant for the on-failure destination,
    in either mode; the hand-off needs no more."""
    construct, templates = _rendered("fast", "fast")
    orchestrator_id = logical_id(construct.orchestrator)

    invokes = [
        statement
        for template in templates.values()
        for policy in resources_of_type(template, "AWS::IAM::Policy").values()
        if "JobRole" in json.dumps(policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "lambda:InvokeFunction" in json.dumps(statement["Action"])
    ]
    assert invokes
    for statement in invokes:
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        assert all(orchestrator_id in json.dumps(resource) for resource in resources), resources


def test_an_unknown_delivery_in_the_props_is_refused():
    with pytest.raises(ValueError, match="delivery must be fast or economy, not 'quick'"):
        synthesize([catch_the_fish()], AppConfig(delivery="quick"))
