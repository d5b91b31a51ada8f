"""The cloud's timer in the template: the every-minute schedule on the reconciler, its scoped
role, and no function for jobs that run no code."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk.assertions import Template

from runtime.definition.model import Approval, Job, Phase, RetryPolicy, Workflow
from tests.cdk_fixtures import catch_the_fish, logical_id, synthesize

WORKFLOW = "timed"


def timed_workflow(**changes: object) -> Workflow:
    jobs = (
        Job(name="fetch", phase="work", retry=RetryPolicy(max=3, delay=5)),
        Job(name="pause", phase="work", after=("fetch",), wait=30),
        Job(name="sign_off", phase="work", after=("pause",), approval=Approval(timeout=600, message="ok?")),
    )
    return Workflow(name=WORKFLOW, phases=(Phase(name="work", jobs=jobs),), **changes)  # type: ignore[arg-type]


def test_a_workflow_with_timers_gets_an_every_minute_schedule_that_asks_its_reconciler_to_fire_them():
    _, built = synthesize([timed_workflow()])
    construct = built.workflows[WORKFLOW]
    template = Template.from_stack(Stack.of(construct))

    schedules = template.find_resources("AWS::Scheduler::Schedule")
    assert construct.timer_schedule is not None
    timer = schedules[logical_id(construct.timer_schedule)]["Properties"]
    assert timer["ScheduleExpression"] == "rate(1 minute)"
    assert timer["Target"]["Arn"] == {"Fn::GetAtt": [logical_id(construct.reconciler), "Arn"]}
    assert timer["Target"]["Input"] == '{"action":"fire_timers"}'
    assert timer["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 0
    # The same role as the reconcile schedule: no new permission for timers.
    reconcile = schedules[logical_id(construct.reconcile_schedule)]["Properties"]
    assert timer["Target"]["RoleArn"] == reconcile["Target"]["RoleArn"]


def test_the_schedules_role_may_invoke_the_reconciler_and_park_failures_alone():
    _, built = synthesize([timed_workflow()])
    construct = built.workflows[WORKFLOW]
    template = Template.from_stack(Stack.of(construct))
    role_id = next(
        name
        for name, role in template.find_resources("AWS::IAM::Role").items()
        if role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"].get("Service")
        == "scheduler.amazonaws.com"
    )
    [policy] = [
        policy
        for policy in template.find_resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
    ]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    granted = {
        action: statement["Resource"] for statement in statements for action in _listed(statement["Action"])
    }
    assert set(granted) == {"lambda:InvokeFunction", "sqs:SendMessage"}
    for resource in _listed(granted["lambda:InvokeFunction"]):
        assert logical_id(construct.reconciler) in str(resource), resource
    assert granted["sqs:SendMessage"] == {"Fn::GetAtt": [logical_id(construct.dead_letter_queue), "Arn"]}


def _listed(value: object) -> list[object]:
    return value if isinstance(value, list) else [value]


def test_a_workflow_that_never_waits_gets_no_timer_schedule():
    _, built = synthesize([catch_the_fish()])
    construct = built.workflows["catch_the_fish"]

    assert construct.timer_schedule is None
    template = Template.from_stack(Stack.of(construct))
    assert len(template.find_resources("AWS::Scheduler::Schedule")) == 1


def test_a_run_deadline_alone_is_a_timer():
    _, built = synthesize([catch_the_fish(timeout=3600)])

    assert built.workflows["catch_the_fish"].timer_schedule is not None


def test_wait_and_approval_jobs_get_no_function():
    _, built = synthesize([timed_workflow()])

    assert set(built.workflows[WORKFLOW].job_functions) == {"fetch"}


def test_every_scheduler_role_trusts_scheduler_only_for_this_accounts_schedule_group():
    """Issue 22: the confused-deputy conditions on the role both schedules (reconcile, timers)
    run with; no role trusts ``scheduler.amazonaws.com`` without them."""
    _, built = synthesize([timed_workflow()])
    template = Template.from_stack(Stack.of(built.workflows[WORKFLOW]))

    trusts = [
        statement
        for role in template.find_resources("AWS::IAM::Role").values()
        for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        if statement["Principal"].get("Service") == "scheduler.amazonaws.com"
    ]
    assert len(trusts) == 1  # the one role both schedules use
    for statement in trusts:
        conditions = statement["Condition"]["StringEquals"]
        assert conditions["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
        assert conditions["aws:SourceArn"] == {
            "Fn::Join": [
                "",
                [
                    "arn:",
                    {"Ref": "AWS::Partition"},
                    ":scheduler:",
                    {"Ref": "AWS::Region"},
                    ":",
                    {"Ref": "AWS::AccountId"},
                    ":schedule-group/default",
                ],
            ]
        }
