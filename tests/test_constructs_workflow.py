"""The Workflow construct, rendered: functions, IAM, rules, queue, topic, alarms, nested job stacks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import NestedStack, Stack
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template

from cdk_app.config import AppConfig
from constructs.workflow import JOB_STACKS, function_name, job_stack_index
from runtime import patterns
from runtime.definition.model import job_function_name, job_function_prefix
from tests.cdk_fixtures import (
    catch_the_fish,
    generated_workflow,
    logical_id,
    resources_of_type,
    staged_code,
    synthesize,
    templates_of,
)

WORKFLOW = "catch_the_fish"
STORE_ENV = {
    "MONGODB_SECRET_ARN": Match.any_value(),
    "MONGODB_DATABASE": "workflows",
    "RUNS_COLLECTION": "state-machines",
    "STATUSES_COLLECTION": "statuses",
}


def all_functions(templates: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Function properties by function name, across the stack and its nested stacks."""
    found = {}
    for template in templates.values():
        for resource in resources_of_type(template, "AWS::Lambda::Function").values():
            found[resource["Properties"]["FunctionName"]] = resource["Properties"]
    return found


def policy_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for policy in resources_of_type(template, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_every_function_exists_with_its_name_handler_and_runtime(fish_templates, fish_workflow):
    functions = all_functions(fish_templates)

    roles = ("orchestrator", "notifier", "starter", "reconciler")
    expected = {function_name(WORKFLOW, role) for role in roles} | {
        job_function_name(WORKFLOW, job.name) for job in fish_workflow.jobs()
    }
    assert set(functions) == expected
    for name, properties in functions.items():
        assert properties["Runtime"] == "python3.14", name
        assert properties["Architectures"] == ["x86_64"], name
        assert len(properties["Layers"]) == 1, name
        assert properties["LoggingConfig"]["LogFormat"] == "JSON", name
        assert properties["LoggingConfig"]["ApplicationLogLevel"] == "INFO", name
    assert (
        functions[function_name(WORKFLOW, "orchestrator")]["Handler"]
        == "runtime.handlers.orchestrator.handler"
    )
    assert functions[function_name(WORKFLOW, "starter")]["Handler"] == "runtime.handlers.starter.handler"
    assert {functions[job_function_name(WORKFLOW, job.name)]["Handler"] for job in fish_workflow.jobs()} == {
        "runtime.handlers.job.handler"
    }


def test_environment_names_the_secret_never_a_connection_string(fish_templates):
    functions = all_functions(fish_templates)

    for name, properties in functions.items():
        variables = properties["Environment"]["Variables"]
        assert {"MONGODB_SECRET_ARN", "MONGODB_DATABASE", "RUNS_COLLECTION", "STATUSES_COLLECTION"} <= set(
            variables
        ), name
        assert "MONGODB_URI" not in variables, name
    rendered = json.dumps(fish_templates)
    assert "mongodb://" not in rendered
    assert "mongodb+srv://" not in rendered


def test_job_environment_names_the_user_handler_only_when_there_is_code(fish_templates):
    functions = all_functions(fish_templates)

    assert functions[job_function_name(WORKFLOW, "buy_fishing_gear")]["Environment"]["Variables"][
        "JOB_HANDLER"
    ] == ("buy.handler")
    catch = functions[job_function_name(WORKFLOW, "catch_fish")]
    assert catch["Environment"]["Variables"]["JOB_HANDLER"] == "handler.handler"
    assert catch["Environment"]["Variables"]["BAIT"] == "worms"
    assert catch["MemorySize"] == 512
    assert "JOB_HANDLER" not in functions[job_function_name(WORKFLOW, "cook")]["Environment"]["Variables"]


def test_notifier_and_starter_get_their_own_variables(fish_template):
    fish_template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": function_name(WORKFLOW, "notifier"),
            "Environment": {
                "Variables": STORE_ENV
                | {"NOTIFY_TOPIC_ARN": Match.any_value(), "SLACK_WEBHOOK_SECRET_ARN": Match.any_value()}
            },
        },
    )
    fish_template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": function_name(WORKFLOW, "starter"),
            "Environment": {"Variables": STORE_ENV | {"WORKFLOW_DEFINITION_FILE": "workflow.json"}},
        },
    )


def test_starter_asset_bundles_the_compiled_definition(fish_app, fish_workflow):
    _, built = fish_app
    staged = staged_code(built.workflows[WORKFLOW].starter)

    document = json.loads((staged / "workflow.json").read_text())

    assert document == fish_workflow.to_document()


def test_each_job_fails_over_to_the_orchestrator(fish_app, fish_workflow):
    _, built = fish_app
    construct = built.workflows[WORKFLOW]
    parent = Stack.of(construct)
    parent_template = Template.from_stack(parent).to_json()
    orchestrator_arn = {
        "Fn::GetAtt": [parent.get_logical_id(construct.orchestrator.node.default_child), "Arn"]
    }

    for job in fish_workflow.jobs():
        function = construct.job_functions[job.name]
        nested = Stack.of(function)
        assert isinstance(nested, NestedStack)
        config = Template.from_stack(nested).find_resources(
            "AWS::Lambda::EventInvokeConfig",
            {"Properties": {"FunctionName": {"Ref": logical_id(function)}}},
        )
        # One for $LATEST (runs without a version map), one for the version this deploy publishes.
        qualifiers = [resource["Properties"]["Qualifier"] for resource in config.values()]
        assert qualifiers[0] == "$LATEST"
        # The version's logical id is its own plus a hash of the function's code and settings.
        assert qualifiers[1]["Fn::GetAtt"][0].startswith(logical_id(construct.job_versions[job.name]))
        for resource in config.values():
            properties = resource["Properties"]
            # No Lambda retries (issue 16): a killed invocation is a failed attempt, retried by
            # the orchestrator.
            assert properties["MaximumRetryAttempts"] == 0
            assert properties["MaximumEventAgeInSeconds"] == 6 * 3600
            parameter = properties["DestinationConfig"]["OnFailure"]["Destination"]["Ref"]
            stack_resource = parent_template["Resources"][logical_id(nested.nested_stack_resource or nested)]
            assert stack_resource["Properties"]["Parameters"][parameter] == orchestrator_arn


def test_rules_use_the_shared_patterns_with_retries_and_the_dead_letter_queue(fish_template, fish_workflow):
    for pattern in (
        patterns.orchestrator_pattern(WORKFLOW),
        patterns.notifier_pattern(WORKFLOW, fish_workflow.notify.on),
    ):
        fish_template.has_resource_properties(
            "AWS::Events::Rule",
            {
                "EventPattern": pattern,
                "Targets": [
                    Match.object_like(
                        {
                            "RetryPolicy": {
                                "MaximumRetryAttempts": Match.any_value(),
                                "MaximumEventAgeInSeconds": 7200,
                            },
                            "DeadLetterConfig": {
                                "Arn": {"Fn::GetAtt": [Match.string_like_regexp("DeadLetterQueue"), "Arn"]}
                            },
                        }
                    )
                ],
            },
        )


def test_dead_letter_queue_enforces_ssl_and_is_encrypted(fish_template):
    fish_template.has_resource_properties("AWS::SQS::Queue", {"SqsManagedSseEnabled": True})
    fish_template.has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                )
            }
        },
    )


def test_topic_is_encrypted_ssl_only_and_subscribes_the_emails(fish_template):
    fish_template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    fish_template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                )
            }
        },
    )
    subscriptions = fish_template.find_resources("AWS::SNS::Subscription")
    assert sorted(s["Properties"]["Endpoint"] for s in subscriptions.values()) == [
        "cook@example.com",
        "ops@example.com",
    ]
    assert {s["Properties"]["Protocol"] for s in subscriptions.values()} == {"email"}


def test_alarms_watch_the_dead_letter_queue_and_orchestrator_errors_and_notify_the_topic(fish_template):
    topic = {"Ref": next(iter(fish_template.find_resources("AWS::SNS::Topic")))}

    fish_template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"MetricName": "ApproximateNumberOfMessagesVisible", "Namespace": "AWS/SQS", "AlarmActions": [topic]},
    )
    fish_template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "Errors",
            "Namespace": "AWS/Lambda",
            "Dimensions": [
                {"Name": "FunctionName", "Value": {"Ref": Match.string_like_regexp("Orchestrator")}}
            ],
            "AlarmActions": [topic],
        },
    )


def test_schedule_rule_starts_runs_with_the_schedule_input(fish_template):
    rules = fish_template.find_resources(
        "AWS::Events::Rule", {"Properties": {"ScheduleExpression": "cron(0 6 * * ? *)"}}
    )

    assert len(rules) == 1
    target = next(iter(rules.values()))["Properties"]["Targets"][0]
    assert "Starter" in target["Arn"]["Fn::GetAtt"][0]
    template = json.loads(target["InputTransformer"]["InputTemplate"])
    assert template == {"run_id": f"{WORKFLOW}-<time>", "input": {"mode": "fast"}}


def test_no_schedule_no_schedule_rule():
    app, built = synthesize([catch_the_fish()])

    template = Template.from_stack(Stack.of(built.workflows[WORKFLOW]))

    assert "schedule" not in built.workflows[WORKFLOW].rules
    assert not template.find_resources(
        "AWS::Events::Rule", {"Properties": {"ScheduleExpression": Match.any_value()}}
    )


def test_orchestrator_invokes_jobs_through_one_prefix_statement(fish_templates):
    template = fish_templates[f"Workflow-{WORKFLOW.replace('_', '-')}"]
    statements = policy_statements(template)

    invokes = [s for s in statements if "lambda:InvokeFunction" in json.dumps(s["Action"])]
    prefix_arn = {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":lambda:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                f":function:{job_function_prefix(WORKFLOW)}*",
            ],
        ]
    }
    # One statement each for the two functions that dispatch attempts: orchestrator and reconciler.
    assert [s["Resource"] for s in invokes if s.get("Sid") == "InvokeOwnJobs"] == [prefix_arn] * 2
    for statement in statements:
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        assert "*" not in resources


def test_secret_read_for_every_role_through_the_grant(fish_templates, fish_workflow):
    roles_reading = [
        policy["Properties"]["Roles"]
        for template in fish_templates.values()
        for policy in resources_of_type(template, "AWS::IAM::Policy").values()
        if any(
            "secretsmanager:GetSecretValue" in statement["Action"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        )
    ]
    # orchestrator, notifier, starter, reconciler, and one role per job
    assert len(roles_reading) == 4 + len(list(fish_workflow.jobs()))
    for template in fish_templates.values():
        assert not resources_of_type(template, "AWS::IAM::ManagedPolicy")
        for role in resources_of_type(template, "AWS::IAM::Role").values():
            assert "ManagedPolicyArns" not in role["Properties"]


def test_each_job_runs_with_its_own_role(fish_app, fish_workflow):
    _, built = fish_app
    construct = built.workflows[WORKFLOW]
    jobs = [job.name for job in fish_workflow.jobs()]

    roles = {name: construct.job_function(name).role for name in jobs}

    assert len({id(role) for role in roles.values()}) == len(jobs)
    for name in jobs:
        assert roles[name] is construct.job_role(name)
        assert construct.job_function(name) is construct.job_functions[name]
        assert Stack.of(construct.job_role(name)) is Stack.of(construct.job_function(name))


def test_a_grant_to_one_job_role_reaches_that_job_only():
    app, built = synthesize([catch_the_fish()])
    construct = built.workflows[WORKFLOW]
    bucket = s3.Bucket.from_bucket_name(Stack.of(construct), "Catches", "catches-example")

    bucket.grant_read(construct.job_role("catch_fish"))

    granted = [
        policy["Properties"]["Roles"]
        for template in templates_of(Stack.of(construct)).values()
        for policy in resources_of_type(template, "AWS::IAM::Policy").values()
        if "catches-example" in json.dumps(policy["Properties"]["PolicyDocument"])
    ]
    assert granted == [[{"Ref": logical_id(construct.job_role("catch_fish"))}]]


def test_asking_for_an_unknown_job_names_the_known_ones(fish_app):
    _, built = fish_app

    with pytest.raises(KeyError, match="has no job 'catch_fsh'; its jobs are buy_fishing_gear, "):
        built.workflows[WORKFLOW].job_role("catch_fsh")


def test_policies_do_not_grow_with_the_number_of_jobs():
    _, small = synthesize([generated_workflow("small", 3, phases=1)])
    _, large = synthesize([generated_workflow("large", 60, phases=3)])

    def shape(built, name):
        template = Template.from_stack(Stack.of(built.workflows[name])).to_json()
        policies = resources_of_type(template, "AWS::IAM::Policy")
        return sorted(len(p["Properties"]["PolicyDocument"]["Statement"]) for p in policies.values())

    assert shape(small, "small") == shape(large, "large")


def test_job_stack_index_is_a_pure_function_of_the_job_name():
    names = [f"job_{i}" for i in range(200)]

    indexes = [job_stack_index(name) for name in names]

    assert indexes == [job_stack_index(name) for name in names]
    assert set(indexes) == set(range(JOB_STACKS))


def test_job_functions_live_in_nested_stacks_by_name_hash(fish_app, fish_workflow):
    _, built = fish_app
    construct = built.workflows[WORKFLOW]

    for job in fish_workflow.jobs():
        stack = Stack.of(construct.job_functions[job.name])
        assert stack.nested_stack_parent is Stack.of(construct)
        assert stack.node.id == f"Jobs{job_stack_index(job.name)}"


@pytest.mark.parametrize("attribute", ["orchestrator", "notifier", "starter", "topic", "dead_letter_queue"])
def test_created_resources_are_read_only_attributes(fish_app, attribute):
    _, built = fish_app
    construct = built.workflows[WORKFLOW]

    with pytest.raises(AttributeError, match="has no setter|can't set|object has no setter"):
        setattr(construct, attribute, None)


def test_the_reconciler_runs_every_five_minutes_and_alarms_when_it_repairs(fish_template, fish_app):
    _, built = fish_app
    reconciler = built.workflows[WORKFLOW].reconciler
    reconciler_id = logical_id(reconciler)
    topic = {"Ref": next(iter(fish_template.find_resources("AWS::SNS::Topic")))}

    fish_template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": function_name(WORKFLOW, "reconciler"),
            "Handler": "runtime.handlers.reconciler.handler",
            "Timeout": 300,
            "Environment": {"Variables": STORE_ENV | {"WORKFLOW_NAME": WORKFLOW}},
        },
    )
    [schedule] = fish_template.find_resources("AWS::Scheduler::Schedule").values()
    assert schedule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    assert schedule["Properties"]["Target"]["Arn"] == {"Fn::GetAtt": [reconciler_id, "Arn"]}
    assert schedule["Properties"]["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 0
    fish_template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "RunsRepaired",
            "Namespace": "MongoLambdaWorkflows",
            "Dimensions": [{"Name": "Workflow", "Value": WORKFLOW}],
            "Statistic": "Sum",
            "Threshold": 1,
            "AlarmActions": [topic],
        },
    )


def test_the_reconcile_schedule_comes_from_context():
    config = AppConfig.from_mapping({"reconcileSchedule": "rate(1 hour)"})
    _, built = synthesize([catch_the_fish()], config)

    template = Template.from_stack(Stack.of(built.workflows[WORKFLOW]))
    template.has_resource_properties("AWS::Scheduler::Schedule", {"ScheduleExpression": "rate(1 hour)"})
