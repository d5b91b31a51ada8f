"""A spec's ``permissions`` end up in that job's role and no other, and cdk-nag stays clean."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks

from cdk_app.app import WorkflowApp
from runtime.definition.loader import workflow_from_document
from runtime.definition.model import Permission, Workflow
from tests.cdk_fixtures import logical_id, resources_of_type, synthesize

OBJECTS = {"actions": ["s3:GetObject", "s3:Get*Tagging"], "resources": ["arn:aws:s3:::fish-bucket/landing/*"]}
TABLE = {
    "actions": ["dynamodb:GetItem", "dynamodb:Query"],
    "resources": ["arn:aws:dynamodb:eu-west-1:123456789012:table/catches"],
}
SPEC: dict[str, Any] = {
    "workflow": "granted",
    "phases": {
        "fishing": {
            "jobs": {
                "catch_fish": {"permissions": [OBJECTS, TABLE]},
                "go_home": {"after": ["catch_fish"]},
            }
        }
    },
}


@pytest.fixture(scope="module")
def granted() -> tuple[App, WorkflowApp, Workflow]:
    workflow = workflow_from_document(SPEC)
    app, built = synthesize([workflow])
    return app, built, workflow


def role_statements(built: WorkflowApp, job: str, workflow: str = "granted") -> list[dict[str, Any]]:
    """The statements of the policies attached to ``job``'s role in ``workflow``."""
    role = built.workflows[workflow].job_roles[job]
    template = Template.from_stack(Stack.of(role)).to_json()
    return [
        statement
        for policy in resources_of_type(template, "AWS::IAM::Policy").values()
        if {"Ref": logical_id(role)} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def rendered(permission: dict[str, list[str]]) -> dict[str, Any]:
    """A statement as CDK renders it: a single action or resource is a string, several a sorted list."""

    def one_or_list(values: list[str]) -> str | list[str]:
        return values[0] if len(values) == 1 else sorted(values)

    return {
        "Action": one_or_list(permission["actions"]),
        "Effect": "Allow",
        "Resource": one_or_list(permission["resources"]),
    }


def test_the_loader_reads_permissions_into_the_job() -> None:
    workflow = workflow_from_document(SPEC)

    assert workflow.job("catch_fish").permissions == (
        Permission(
            actions=("s3:GetObject", "s3:Get*Tagging"), resources=("arn:aws:s3:::fish-bucket/landing/*",)
        ),
        Permission(actions=tuple(TABLE["actions"]), resources=tuple(TABLE["resources"])),
    )
    assert workflow.job("go_home").permissions == ()


def test_permissions_survive_the_run_snapshot() -> None:
    workflow = workflow_from_document(SPEC)

    document = workflow.to_document()

    assert document["phases"][0]["jobs"][0]["permissions"] == [OBJECTS, TABLE]
    assert (
        Workflow.from_document(document).job("catch_fish").permissions
        == workflow.job("catch_fish").permissions
    )


def test_a_job_with_permissions_gets_exactly_those_statements_and_others_do_not(granted) -> None:
    _, built, _ = granted

    with_permissions = role_statements(built, "catch_fish")
    without = role_statements(built, "go_home")

    # go_home runs with the role shared by the jobs without permissions, in the workflow's own
    # stack: its references to the log group and the orchestrator are rendered differently there,
    # so the baseline statements are compared by their actions.
    baseline = [statement["Action"] for statement in without]
    added = [statement for statement in with_permissions if statement["Action"] not in baseline]
    assert added == [rendered(OBJECTS), rendered(TABLE)]
    assert [statement["Action"] for statement in with_permissions if statement not in added] == baseline
    granted_names = {*OBJECTS["actions"], *TABLE["actions"], *OBJECTS["resources"], *TABLE["resources"]}
    assert not any(str(statement).count(name) for statement in without for name in granted_names)


def test_no_other_role_of_the_workflow_gets_them(granted) -> None:
    _, built, _ = granted
    construct = built.workflows["granted"]
    others = [construct.orchestrator, construct.notifier, construct.starter]

    for function in others:
        template = Template.from_stack(Stack.of(function)).to_json()
        assert "fish-bucket" not in str(template)
        assert "dynamodb:GetItem" not in str(template)


def test_cdk_nag_stays_clean_with_wildcards_that_complete_a_name(granted) -> None:
    app, _, _ = granted

    report = AwsSolutionsChecks().validate_scope(app)

    assert [
        f"{violation.rule_name} at {resource.construct_path}"
        for violation in report.violations
        for resource in violation.violating_resources
    ] == []


def _mentions_status_key(value: Any) -> bool:
    return "StatusKey" in json.dumps(value)


def test_no_job_role_may_read_the_status_key_and_every_system_function_does(
    granted: tuple[App, WorkflowApp, Workflow],
) -> None:
    """T4 of the trust model: the key that signs operations and verifies statuses is the control
    plane's; a job's code signs only with the key of its own attempt, given in its event."""
    _, built, _ = granted
    for job in ("catch_fish", "go_home"):
        statements = role_statements(built, job)
        assert statements, job
        assert not any(_mentions_status_key(statement) for statement in statements), job
        function = cast(lambda_.CfnFunction, built.workflows["granted"].job_function(job).node.default_child)
        assert "STATUS_KEY_SECRET_ARN" not in json.dumps(Stack.of(function).resolve(function.environment))
    workflow = built.workflows["granted"]
    template = Template.from_stack(Stack.of(workflow)).to_json()
    readers = [
        policy["Properties"]["Roles"]
        for policy in resources_of_type(template, "AWS::IAM::Policy").values()
        if any(
            _mentions_status_key(statement["Resource"])
            and "secretsmanager:GetSecretValue" in statement["Action"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        )
    ]
    reader_roles = {role["Ref"] for roles in readers for role in roles}
    for system in (workflow.orchestrator, workflow.reconciler, workflow.starter, workflow.notifier):
        assert logical_id(system.role) in reader_roles  # type: ignore[arg-type]


def test_no_job_role_may_invoke_anything_but_its_on_failure_destination(
    granted: tuple[App, WorkflowApp, Workflow],
) -> None:
    """T4: a job's code may not start or operate runs through the starter (nor invoke any other
    function); its role may invoke only the orchestrator, Lambda's on-failure destination."""
    _, built, _ = granted
    workflow = built.workflows["granted"]
    orchestrator = logical_id(workflow.orchestrator)
    for job in ("catch_fish", "go_home"):
        invoking = [
            statement
            for statement in role_statements(built, job)
            if "lambda:" in json.dumps(statement["Action"])
        ]
        assert invoking, job
        for statement in invoking:
            assert orchestrator in json.dumps(statement["Resource"]) or "Orchestrator" in json.dumps(
                statement["Resource"]
            ), (job, statement)
            assert logical_id(workflow.starter) not in json.dumps(statement["Resource"])
