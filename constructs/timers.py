"""The cloud's timer: an EventBridge Scheduler schedule that runs the workflow's reconciler every
minute with ``{"action": "fire_timers"}``, which fires the due timers of the workflow's runs for
that minute as they come due (``runtime.service.timers.fire_timers_until``).

Why not one-time ``at()`` schedules per timer: the timer's truth would then live in two places
(the run document and Scheduler), the orchestrator would need ``scheduler:CreateSchedule``,
``scheduler:DeleteSchedule`` and ``iam:PassRole`` on top of MongoDB, a cancel or a redrive would
have schedules to clean up, and a schedule lost between the run's write and its creation would
need repair anyway. The minute schedule needs no new permission (it reuses the reconcile
schedule's role, which may invoke the reconciler only), reads the one index that holds only runs
with a timer, and returns at once when no timer is due within the minute: a delayed retry costs
the seconds the reconciler waits for it, not a resource. Only a workflow whose runs ever wait for
a time (``Workflow.uses_timers``) gets it.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_sqs as sqs

from constructs import Construct
from runtime.contracts import FIRE_TIMERS

TIMER_SCHEDULE = "rate(1 minute)"
"""EventBridge Scheduler's shortest rate: each invocation covers its minute."""


SCHEDULE_GROUP = "default"
"""The schedule group the workflow's schedules are in (CDK's ``Schedule`` without a group)."""


def scheduler_principal(scope: Construct) -> iam.ServicePrincipal:
    """EventBridge Scheduler, trusted only on behalf of this account's schedules of
    ``SCHEDULE_GROUP``: the confused-deputy conditions Scheduler sets when it assumes a role
    (``aws:SourceAccount``, and as ``aws:SourceArn`` the schedule's group)."""
    group = Stack.of(scope).format_arn(
        service="scheduler",
        resource="schedule-group",
        resource_name=SCHEDULE_GROUP,
        arn_format=ArnFormat.SLASH_RESOURCE_NAME,
    )
    return iam.ServicePrincipal(
        "scheduler.amazonaws.com",
        conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID, "aws:SourceArn": group}},
    )


def timer_schedule(
    scope: Construct,
    workflow: str,
    reconciler: lambda_.IFunction,
    role: iam.IRole,
    dead_letter_queue: sqs.IQueue,
) -> scheduler.Schedule:
    """The every-minute schedule that has ``reconciler`` fire the workflow's due timers."""
    return scheduler.Schedule(
        scope,
        "TimerSchedule",
        description=f"Fires the due timers of {workflow}'s runs (retry delays, waits, approvals, deadlines)",
        schedule=scheduler.ScheduleExpression.expression(TIMER_SCHEDULE),
        # A minute that fails is not retried: the next minute fires what is due by then.
        target=scheduler_targets.LambdaInvoke(
            reconciler,
            input=scheduler.ScheduleTargetInput.from_object({"action": FIRE_TIMERS}),
            role=role,
            dead_letter_queue=dead_letter_queue,
            retry_attempts=0,
            max_event_age=Duration.minutes(1),
        ),
    )
