"""Scheduled runs know their time: the workflow's schedule is an EventBridge Scheduler schedule
whose run input carries ``scheduled_time`` (Scheduler's ``<aws.scheduler.scheduled-time>``), in
the spec's ``schedule_timezone`` (docs/spec.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk.assertions import Match, Template

from runtime.definition.build import workflow_from_document
from runtime.errors import SpecError
from tests.cdk_fixtures import catch_the_fish, synthesize

pytestmark = pytest.mark.synth

WORKFLOW = "catch_the_fish"


def _start_schedule(template: Template) -> dict[str, Any]:
    schedules = template.find_resources(
        "AWS::Scheduler::Schedule", {"Properties": {"ScheduleExpression": "cron(0 6 * * ? *)"}}
    )
    assert len(schedules) == 1, schedules
    properties: dict[str, Any] = next(iter(schedules.values()))["Properties"]
    return properties


def test_the_schedule_starts_runs_with_their_scheduled_time_in_the_input_in_its_time_zone() -> None:
    workflow = catch_the_fish(
        schedule="cron(0 6 * * ? *)", schedule_input={"mode": "fast"}, schedule_timezone="Europe/Berlin"
    )
    _, built = synthesize([workflow])
    template = Template.from_stack(Stack.of(built.workflows[WORKFLOW]))

    schedule = _start_schedule(template)

    assert schedule["ScheduleExpressionTimezone"] == "Europe/Berlin"
    target = schedule["Target"]
    assert "Starter" in target["Arn"]["Fn::GetAtt"][0]
    assert json.loads(target["Input"]) == {
        "run_id": f"{WORKFLOW}-<aws.scheduler.scheduled-time>",
        "input": {"mode": "fast", "scheduled_time": "<aws.scheduler.scheduled-time>"},
        "scheduled": True,
    }
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 8, "MaximumEventAgeInSeconds": 7200}
    assert "DeadLetterConfig" in target
    assert not template.find_resources(
        "AWS::Events::Rule", {"Properties": {"ScheduleExpression": Match.any_value()}}
    )


def test_a_schedule_without_input_or_time_zone_gives_the_scheduled_time_alone_in_utc() -> None:
    _, built = synthesize([catch_the_fish(schedule="cron(0 6 * * ? *)")])
    template = Template.from_stack(Stack.of(built.workflows[WORKFLOW]))

    schedule = _start_schedule(template)

    assert schedule["ScheduleExpressionTimezone"] == "Etc/UTC"
    assert json.loads(schedule["Target"]["Input"])["input"] == {
        "scheduled_time": "<aws.scheduler.scheduled-time>"
    }


def test_the_start_schedules_role_may_invoke_the_starter_alone() -> None:
    _, built = synthesize([catch_the_fish(schedule="rate(1 day)")])
    construct = built.workflows[WORKFLOW]
    template = Template.from_stack(Stack.of(construct))
    role_arn = construct.start_schedule.node.default_child.target.role_arn  # type: ignore[union-attr]
    role_id = Stack.of(construct).resolve(role_arn)["Fn::GetAtt"][0]

    policies = [
        policy["Properties"]["PolicyDocument"]["Statement"]
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
    ]

    actions = {
        action
        for statements in policies
        for statement in statements
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }
    assert actions <= {"lambda:InvokeFunction", "sqs:SendMessage"}
    resources = json.dumps([statement["Resource"] for statements in policies for statement in statements])
    assert "Starter" in resources
    assert "Reconciler" not in resources
    assert "Orchestrator" not in resources


SPEC: dict[str, Any] = {
    "workflow": "nightly",
    "phases": {"p": {"jobs": {"a": {}}}},
    "schedule": "cron(0 2 * * ? *)",
}


def test_schedule_timezone_is_an_iana_name() -> None:
    workflow = workflow_from_document({**SPEC, "schedule_timezone": "America/New_York"})
    assert workflow.schedule_timezone == "America/New_York"
    assert workflow_from_document(SPEC).schedule_timezone is None


@pytest.mark.parametrize(
    ("changes", "path", "message"),
    [
        (
            {"schedule_timezone": "Europe/Berln"},
            "$.schedule_timezone",
            "'Europe/Berln' is not an IANA time zone name (did you mean 'Europe/Berlin'?)",
        ),
        ({"schedule_timezone": "../../etc/passwd"}, "$.schedule_timezone", "is not an IANA time zone name"),
        (
            {"schedule_timezone": "UTC", "schedule": None},
            "$.schedule_timezone",
            "'schedule_timezone' has no effect without 'schedule'",
        ),
        (
            {"schedule_input": {"scheduled_time": "yesterday"}},
            "$.schedule_input.scheduled_time",
            "scheduled runs get 'scheduled_time' (the time the schedule fired): schedule_input may not "
            "set it",
        ),
        (
            {
                "input_schema": {
                    "type": "object",
                    "properties": {"day": {"type": "string"}},
                    "additionalProperties": False,
                }
            },
            "$.schedule",
            "a scheduled run's input has 'scheduled_time' (the time the schedule fired, e.g. "
            "'2026-01-01T02:00:00Z'), which input_schema refuses: Additional properties are not allowed",
        ),
    ],
    ids=["misspelled", "not-a-name", "without-schedule", "input-sets-it", "schema-refuses-it"],
)
def test_schedule_settings_that_cannot_work_are_refused(
    changes: dict[str, Any], path: str, message: str
) -> None:
    spec = {key: value for key, value in {**SPEC, **changes}.items() if value is not None}

    with pytest.raises(SpecError) as raised:
        workflow_from_document(spec)

    assert any(
        str(problem.path) == path and message in problem.message for problem in raised.value.problems
    ), [(str(problem.path), problem.message) for problem in raised.value.problems]
