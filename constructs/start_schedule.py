"""The workflow's ``schedule``: an EventBridge Scheduler schedule that invokes the starter.

Scheduler rather than an EventBridge rule with a schedule: only Scheduler tells its target the
time a run was scheduled for (the context attribute ``<aws.scheduler.scheduled-time>``, put in
the run's input as ``scheduled_time`` and in its id, so a repeated delivery starts nothing new)
and only Scheduler evaluates a cron expression in a time zone (``ScheduleExpressionTimezone``).
"""

from __future__ import annotations

from typing import Any, cast

from aws_cdk import Acknowledgment, CfnElement, Duration, Stack, TimeZone, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_sqs as sqs

from constructs import Construct
from constructs.timers import scheduler_principal
from runtime.definition.model import Workflow
from runtime.engine.schedule import scheduled_input, scheduled_run_id


def start_input(workflow: Workflow) -> dict[str, Any]:
    """The starter's event: the run id and the input, each with the scheduled time, and
    ``scheduled`` (the workflow's ``schedule_overlap`` applies to the run)."""
    scheduled_time = str(scheduler.ContextAttribute.scheduled_time)
    return {
        "run_id": scheduled_run_id(workflow, scheduled_time),
        "input": scheduled_input(workflow, scheduled_time),
        "scheduled": True,
    }


def start_schedule(
    scope: Construct,
    workflow: Workflow,
    starter: lambda_.IFunction,
    dead_letter_queue: sqs.IQueue,
    retry_attempts: int,
    max_event_age: Duration,
) -> scheduler.Schedule:
    """The schedule that starts runs of ``workflow``; its role may invoke the starter alone."""
    assert workflow.schedule is not None
    role = iam.Role(
        scope,
        "StartScheduleRole",
        assumed_by=scheduler_principal(scope),
        description=f"Lets the schedule of workflow {workflow.name} invoke its starter",
    )
    starter_id = Stack.of(scope).get_logical_id(cast(CfnElement, starter.node.default_child))
    Validations.of(role).acknowledge(
        Acknowledgment(
            id=f"AwsSolutions-IAM5[Resource::<{starter_id}.Arn>:*]",
            reason="CDK's invoke grant for the schedule covers the starter's versions; it names that "
            "one function.",
        )
    )
    zone = None if workflow.schedule_timezone is None else TimeZone.of(workflow.schedule_timezone)
    return scheduler.Schedule(
        scope,
        "StartSchedule",
        description=f"Starts runs of {workflow.name}; the run id is the scheduled time, so a repeated "
        "delivery starts nothing new",
        schedule=scheduler.ScheduleExpression.expression(workflow.schedule, zone),
        target=scheduler_targets.LambdaInvoke(
            starter,
            input=scheduler.ScheduleTargetInput.from_object(start_input(workflow)),
            role=role,
            dead_letter_queue=dead_letter_queue,
            retry_attempts=retry_attempts,
            max_event_age=max_event_age,
        ),
    )
