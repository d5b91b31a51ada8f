"""What tells people a workflow is in trouble: its encrypted notification topic, the policies that
let CloudWatch alarms publish to it, and the alarms. The topic's key encrypts the workflow's log
group too (one customer key per workflow).

A topic policy replaces SNS's default one, and ``enforce_ssl`` writes a policy holding only the
TLS deny: without a statement of our own, CloudWatch may not publish and every alarm would fire
into nothing. The topic is encrypted with a customer key, so CloudWatch also needs that key.
Both grants are scoped to this workflow's alarms by name (``<workflow>-alarm-*``) and account,
the confused-deputy conditions CloudWatch sets on its requests.

The functions below add their resources directly to the ``Workflow`` construct: their logical
ids stay what they were before this module existed.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs

from constructs import Construct
from runtime.contracts import RECONCILER_METRICS_NAMESPACE, REJECTED_STATUSES_METRIC
from runtime.definition import model

ALARM_INFIX = "-alarm-"
"""Alarms are named ``<workflow>-alarm-<what>``; the topic and key policies allow that prefix.
Workflow ids have no ``-``, so one workflow's prefix never matches another's alarms."""

STATUS_EVENT_SILENCE = Duration.minutes(15)
"""How long after a run started without the orchestrator handling any event the workflow's
``status-events-stopped`` alarm fires. A start records ``workflow_started``, which reaches the
orchestrator within seconds when the trigger, bus and rule work."""

CLOUDWATCH = iam.ServicePrincipal("cloudwatch.amazonaws.com")


def alarm_name(workflow: str, what: str) -> str:
    return f"{workflow}{ALARM_INFIX}{what}"


def _alarm_conditions(scope: Construct, workflow: str) -> dict[str, dict[str, str]]:
    alarms = Stack.of(scope).format_arn(
        service="cloudwatch",
        resource="alarm",
        resource_name=alarm_name(workflow, "*"),
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )
    return {"ArnLike": {"aws:SourceArn": alarms}, "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}


def notification_topic(scope: Construct, workflow: model.Workflow) -> sns.Topic:
    """The encrypted topic (``TopicKey``, ``Topic``) with the e-mail subscriptions, publishable by
    this workflow's alarms."""
    conditions = _alarm_conditions(scope, workflow.name)
    key = kms.Key(
        scope,
        "TopicKey",
        enable_key_rotation=True,
        description=f"Encrypts the notification topic and the log group of workflow {workflow.name}",
    )
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="AlarmsUseTheTopicKey",
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            principals=[CLOUDWATCH],
            resources=["*"],
            conditions=conditions,
        )
    )
    # The same key encrypts the workflow's log group (``Workflow.log_group``): CloudWatch Logs
    # may use it for log groups of this account and region, the scope AWS's own example gives
    # (the log group's generated name cannot be named here: it depends on this key).
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="LogsUseTheKey",
            actions=[
                "kms:Encrypt*",
                "kms:Decrypt*",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey*",
                "kms:Describe*",
            ],
            principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
            resources=["*"],
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": Stack.of(scope).format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                }
            },
        )
    )
    topic = sns.Topic(
        scope, "Topic", display_name=f"Workflow {workflow.name}", master_key=key, enforce_ssl=True
    )
    topic.add_to_resource_policy(
        iam.PolicyStatement(
            sid="AlarmsPublish",
            actions=["sns:Publish"],
            principals=[CLOUDWATCH],
            resources=[topic.topic_arn],
            conditions=conditions,
        )
    )
    for address in workflow.notify.email:
        topic.add_subscription(subscriptions.EmailSubscription(address))
    return topic


def workflow_alarms(
    scope: Construct,
    workflow: str,
    topic: sns.ITopic,
    dead_letter_queue: sqs.IQueue,
    orchestrator: lambda_.IFunction,
    starter: lambda_.IFunction,
) -> tuple[cloudwatch.Alarm, ...]:
    """Dead letters, orchestrator errors, and status events that stopped arriving; each notifies
    the topic."""
    alarms = (
        cloudwatch.Alarm(
            scope,
            "DeadLetterAlarm",
            alarm_name=alarm_name(workflow, "dead-letters"),
            alarm_description=f"{workflow}: events or invocations were given up on; see the "
            "dead-letter queue",
            metric=dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        ),
        cloudwatch.Alarm(
            scope,
            "OrchestratorErrorsAlarm",
            alarm_name=alarm_name(workflow, "orchestrator-errors"),
            alarm_description=f"{workflow}: the orchestrator failed; runs may stall",
            metric=orchestrator.metric_errors(period=Duration.minutes(5), statistic="Sum"),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        ),
        _status_events_stopped(scope, workflow, orchestrator, starter),
    )
    action = cloudwatch_actions.SnsAction(topic)
    for alarm in alarms:
        alarm.add_alarm_action(action)
    return alarms


def _status_events_stopped(
    scope: Construct, workflow: str, orchestrator: lambda_.IFunction, starter: lambda_.IFunction
) -> cloudwatch.Alarm:
    """Runs were started but the orchestrator handled nothing: the event path is broken (the
    Atlas trigger suspended or deleted, the partner source not associated, a bus or match that
    changed). Lambda publishes no ``Invocations`` datapoint for a function that was not invoked,
    so both series are filled with 0; a period with no starts is then 0 too, and a period with no
    data at all (nothing happened) is not breaching.

    What it cannot tell: a trigger that stops in the middle of a run with no start after it (the
    next start, or a schedule's, shows it); a start within seconds of a period's end whose event is
    handled in the next period may raise it once; a repeated start of an existing run id records
    nothing new and looks the same. A reconciler's own metrics would replace this guess."""
    period = STATUS_EVENT_SILENCE
    silence = cloudwatch.MathExpression(
        expression="IF(FILL(starts, 0) > 0 AND FILL(handled, 0) == 0, 1, 0)",
        using_metrics={
            "starts": starter.metric_invocations(period=period, statistic="Sum"),
            "handled": orchestrator.metric_invocations(period=period, statistic="Sum"),
        },
        period=period,
        label="runs started, no status event handled",
    )
    return cloudwatch.Alarm(
        scope,
        "StatusEventsStoppedAlarm",
        alarm_name=alarm_name(workflow, "status-events-stopped"),
        alarm_description=f"{workflow}: runs were started in the last {period.to_minutes()} minutes but "
        "the orchestrator handled no status event; check the Atlas trigger (suspended?) and the bus",
        metric=silence,
        threshold=1,
        evaluation_periods=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )


def reconciler_alarm(scope: Construct, workflow: str, topic: sns.ITopic) -> cloudwatch.Alarm:
    """The reconciler writes its figures as embedded-metric-format log lines
    (``runtime.handlers.reconciler``); a repair means an event was lost somewhere."""
    return _count_alarm(
        scope,
        "ReconcilerRepairedAlarm",
        workflow,
        topic,
        what="reconciler-repaired",
        metric_name="RunsRepaired",
        description=f"{workflow}: the reconciler repaired runs whose events were lost; see "
        "its log for the runs, and the trigger, the rules and the dead-letter queue for the cause",
    )


def rejected_statuses_alarm(scope: Construct, workflow: str, topic: sns.ITopic) -> cloudwatch.Alarm:
    """The orchestrator and the reconciler count each status they reject as not authentic
    (``runtime.aws.metrics``): someone wrote a status they may not, or a job's code tried to."""
    return _count_alarm(
        scope,
        "RejectedStatusesAlarm",
        workflow,
        topic,
        what="rejected-statuses",
        metric_name=REJECTED_STATUSES_METRIC,
        description=f"{workflow}: statuses were rejected as not authentic (a writer without the "
        "key, or a job writing for another attempt); each is recorded as status_rejected in its run",
    )


def _count_alarm(
    scope: Construct,
    construct_id: str,
    workflow: str,
    topic: sns.ITopic,
    *,
    what: str,
    metric_name: str,
    description: str,
) -> cloudwatch.Alarm:
    """An alarm on one of the workflow's own embedded metrics: any count in five minutes
    notifies the topic."""
    alarm = cloudwatch.Alarm(
        scope,
        construct_id,
        alarm_name=alarm_name(workflow, what),
        alarm_description=description,
        metric=cloudwatch.Metric(
            namespace=RECONCILER_METRICS_NAMESPACE,
            metric_name=metric_name,
            dimensions_map={"Workflow": workflow},
            period=Duration.minutes(5),
            statistic="Sum",
        ),
        threshold=1,
        evaluation_periods=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
    return alarm
