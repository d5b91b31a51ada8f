"""Alarms that reach someone: the topic and key policies let this workflow's alarms publish to
the encrypted topic, and the alarm for status events that stopped arriving."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App

from cdk_app.app import WorkflowApp
from constructs.monitoring import ALARM_INFIX, STATUS_EVENT_SILENCE
from tests.cdk_fixtures import logical_id, resources_of_type

WORKFLOW = "catch_the_fish"
ALARM_PREFIX = f"{WORKFLOW}{ALARM_INFIX}"
ALARM_CONDITIONS = {
    "ArnLike": {
        "aws:SourceArn": {
            "Fn::Join": [
                "",
                [
                    "arn:",
                    {"Ref": "AWS::Partition"},
                    ":cloudwatch:",
                    {"Ref": "AWS::Region"},
                    ":",
                    {"Ref": "AWS::AccountId"},
                    f":alarm:{ALARM_PREFIX}*",
                ],
            ]
        }
    },
    "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
}


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return list(document["Statement"])


def test_cloudwatch_may_publish_to_the_topic_for_this_workflows_alarms_only(fish_template):
    (topic_id,) = fish_template.find_resources("AWS::SNS::Topic")
    (policy,) = fish_template.find_resources("AWS::SNS::TopicPolicy").values()

    allowed = [
        statement
        for statement in statements(policy["Properties"]["PolicyDocument"])
        if statement["Effect"] == "Allow"
    ]

    assert allowed == [
        {
            "Sid": "AlarmsPublish",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": {"Ref": topic_id},
            "Condition": ALARM_CONDITIONS,
        }
    ]


def test_cloudwatch_may_use_the_topic_key_for_this_workflows_alarms_only(fish_template):
    (key,) = fish_template.find_resources("AWS::KMS::Key").values()

    for_cloudwatch = [
        statement
        for statement in statements(key["Properties"]["KeyPolicy"])
        if statement.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]

    assert len(for_cloudwatch) == 1
    assert set(for_cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert for_cloudwatch[0]["Condition"] == ALARM_CONDITIONS


def test_every_alarm_is_named_under_the_prefix_the_policies_allow(fish_template):
    topic = {"Ref": next(iter(fish_template.find_resources("AWS::SNS::Topic")))}
    alarms = fish_template.find_resources("AWS::CloudWatch::Alarm")

    # dead letters, orchestrator errors, events stopped, reconciler repairs, rejected statuses
    assert len(alarms) == 5
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmName"].startswith(ALARM_PREFIX)
        assert alarm["Properties"]["AlarmActions"] == [topic]


@pytest.fixture
def fish_app_function_ids(fish_app: tuple[App, WorkflowApp]) -> dict[str, str]:
    _, built = fish_app
    construct = built.workflows[WORKFLOW]
    return {"starter": logical_id(construct.starter), "orchestrator": logical_id(construct.orchestrator)}


def test_status_events_stopped_alarm_compares_starts_with_handled_events(
    fish_template, fish_app_function_ids
):
    (alarm,) = (
        alarm["Properties"]
        for alarm in resources_of_type(fish_template.to_json(), "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"]["AlarmName"] == f"{ALARM_PREFIX}status-events-stopped"
    )

    by_id = {metric["Id"]: metric for metric in alarm["Metrics"]}
    assert by_id["expr_1"]["Expression"] == "IF(FILL(starts, 0) > 0 AND FILL(handled, 0) == 0, 1, 0)"
    period = int(STATUS_EVENT_SILENCE.to_seconds())
    functions = {"starts": fish_app_function_ids["starter"], "handled": fish_app_function_ids["orchestrator"]}
    for metric_id, function_id in functions.items():
        stat = by_id[metric_id]["MetricStat"]
        assert stat["Metric"]["MetricName"] == "Invocations"
        assert stat["Metric"]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]
        assert stat["Period"] == period
        assert stat["Stat"] == "Sum"
        assert by_id[metric_id]["ReturnData"] is False
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
