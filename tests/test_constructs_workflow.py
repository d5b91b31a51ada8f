"""The Workflow construct, rendered: functions, IAM, rules, queue, topic, alarms, nested job stacks."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_cdk import NestedStack, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Match, Template

from cdk_app.config import AppConfig
from constructs.connection import connection_secret
from constructs.workflow import JOB_STACKS, Workflow, WorkflowProps, function_name, job_stack_index
from runtime import patterns
from runtime.definition.model import Permission, job_function_name, job_function_prefix
from tests.cdk_fixtures import (
    catch_the_fish,
    generated_workflow,
    logical_id,
    make_app,
    resources_of_type,
    staged_code,
    synthesize,
    templates_of,
    with_job_changes,
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
        patterns.orchestrator_pattern(WORKFLOW, database="workflows"),
        patterns.notifier_pattern(WORKFLOW, fish_workflow.notify.on, database="workflows"),
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


def _status_rule_patterns(template: Template) -> dict[str, dict[str, Any]]:
    rules = template.find_resources("AWS::Events::Rule")
    return {
        key: rule["Properties"]["EventPattern"]
        for key, rule in rules.items()
        if "EventPattern" in rule["Properties"]
    }


def test_rules_accept_only_the_trigger_source_and_the_configured_database(fish_template):
    """Issue 22: an event anyone else puts on the bus (PutEvents cannot forge an ``aws.`` source),
    or a trigger on another database, matches neither the orchestrator's nor the notifier's rule."""
    found = _status_rule_patterns(fish_template)

    assert sorted(re.sub(r"[0-9A-F]{8}$", "", key) for key in found) == [
        "WorkflowNotifierRule",
        "WorkflowOrchestratorRule",
    ]
    for key, pattern in found.items():
        assert pattern["source"] == [{"prefix": "aws.partner/mongodb.com/stitch.trigger/"}], key
        assert pattern["detail"]["ns"] == {"db": ["workflows"], "coll": ["statuses"]}, key


def test_rules_follow_the_wiring_source_and_the_configured_database(fish_workflow):
    source = "aws.partner/mongodb.com/stitch.trigger/65f0c0ffee0123456789abcd"
    config = AppConfig.from_mapping({"partnerEventSource": source, "mongodbDatabase": "fishing"})
    _, built = synthesize([fish_workflow], config)

    found = _status_rule_patterns(Template.from_stack(Stack.of(built.workflows[WORKFLOW])))

    assert len(found) == 2
    for key, pattern in found.items():
        assert pattern["source"] == [{"prefix": source}], key
        assert pattern["detail"]["ns"]["db"] == ["fishing"], key


def test_a_failed_reconciler_pass_is_not_retried_and_lands_in_the_dead_letter_queue(fish_app):
    """Issue 22: Lambda's default 2 retries would overlap the next scheduled pass."""
    _, built = fish_app
    construct = built.workflows[WORKFLOW]
    template = Template.from_stack(Stack.of(construct))

    [config] = template.find_resources(
        "AWS::Lambda::EventInvokeConfig",
        {"Properties": {"FunctionName": {"Ref": logical_id(construct.reconciler)}}},
    ).values()

    properties = config["Properties"]
    assert properties["MaximumRetryAttempts"] == 0
    assert properties["MaximumEventAgeInSeconds"] == 300
    assert properties["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": [logical_id(construct.dead_letter_queue), "Arn"]
    }


def test_the_log_group_is_encrypted_with_the_workflows_key(fish_app):
    """Issue 22 (checkov CKV_AWS_158): the topic's customer key encrypts the log group, and its
    policy lets CloudWatch Logs use it for this account's log groups only."""
    _, built = fish_app
    construct = built.workflows[WORKFLOW]
    template = Template.from_stack(Stack.of(construct))
    key = logical_id(construct.topic.master_key)

    template.has_resource_properties(
        "AWS::Logs::LogGroup", {"KmsKeyId": {"Fn::GetAtt": [key, "Arn"]}, "RetentionInDays": 30}
    )
    [policy] = [
        resource["Properties"]["KeyPolicy"]
        for name, resource in template.find_resources("AWS::KMS::Key").items()
        if name == key
    ]
    [statement] = [s for s in policy["Statement"] if s.get("Sid") == "LogsUseTheKey"]
    assert statement["Principal"] == {
        "Service": {"Fn::Join": ["", ["logs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
    }
    assert statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] == {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":logs:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                ":log-group:*",
            ],
        ]
    }


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


def test_the_schedule_starts_runs_with_the_schedule_input_and_their_scheduled_time(fish_template):
    schedules = fish_template.find_resources(
        "AWS::Scheduler::Schedule", {"Properties": {"ScheduleExpression": "cron(0 6 * * ? *)"}}
    )

    assert len(schedules) == 1
    target = next(iter(schedules.values()))["Properties"]["Target"]
    assert "Starter" in target["Arn"]["Fn::GetAtt"][0]
    assert json.loads(target["Input"]) == {
        "run_id": f"{WORKFLOW}-<aws.scheduler.scheduled-time>",
        "input": {"mode": "fast", "scheduled_time": "<aws.scheduler.scheduled-time>"},
        "scheduled": True,  # schedule_overlap applies to it
    }


def test_no_schedule_no_schedule_rule():
    app, built = synthesize([catch_the_fish()])

    template = Template.from_stack(Stack.of(built.workflows[WORKFLOW]))

    assert built.workflows[WORKFLOW].start_schedule is None
    assert not template.find_resources(
        "AWS::Events::Rule", {"Properties": {"ScheduleExpression": Match.any_value()}}
    )
    assert not [
        schedule
        for schedule in template.find_resources("AWS::Scheduler::Schedule").values()
        if "Starter" in json.dumps(schedule["Properties"]["Target"]["Arn"])
    ]


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
    # orchestrator, notifier, starter, reconciler, and the role the jobs share (none has permissions)
    assert not any(job.permissions for job in fish_workflow.jobs())
    assert len(roles_reading) == 4 + 1
    for template in fish_templates.values():
        assert not resources_of_type(template, "AWS::IAM::ManagedPolicy")
        for role in resources_of_type(template, "AWS::IAM::Role").values():
            assert "ManagedPolicyArns" not in role["Properties"]


def test_jobs_without_permissions_run_with_the_one_role_they_share(fish_app, fish_workflow):
    _, built = fish_app
    construct = built.workflows[WORKFLOW]
    jobs = [job.name for job in fish_workflow.jobs()]

    roles = {name: construct.job_function(name).role for name in jobs}

    assert len({id(role) for role in roles.values()}) == 1
    for name in jobs:
        assert roles[name] is construct.shared_job_role is construct.job_roles[name]
        assert construct.job_function(name) is construct.job_functions[name]
    assert Stack.of(construct.shared_job_role) is Stack.of(construct)


def test_the_role_of_a_job_that_shares_one_is_refused_so_a_grant_never_reaches_them_all(fish_app):
    _, built = fish_app

    with pytest.raises(ValueError, match="job 'catch_fish' of workflow 'catch_the_fish' has no role of its"):
        built.workflows[WORKFLOW].job_role("catch_fish")


def _props(stack: Stack, workflow: Any, **options: Any) -> WorkflowProps:
    """A workflow's props in a stack of its own: an imported layer, bus and secret."""
    return WorkflowProps(
        workflow=workflow,
        event_bus=events.EventBus.from_event_bus_name(stack, f"Bus{len(stack.node.children)}", "default"),
        secret=connection_secret(stack, f"Secret{len(stack.node.children)}", secret_name="workflows/mongodb"),
        layer=lambda_.LayerVersion.from_layer_version_arn(
            stack, f"Layer{len(stack.node.children)}", "arn:aws:lambda:us-east-1:111111111111:layer:deps:1"
        ),
        **options,
    )


def test_a_job_named_in_own_roles_gets_a_role_to_grant_to_alone():
    stack = Stack(make_app(), "Own")
    construct = Workflow(stack, "W", _props(stack, catch_the_fish(), own_roles=("catch_fish",)))
    bucket = s3.Bucket.from_bucket_name(stack, "Catches", "catches-example")

    bucket.grant_read(construct.job_role("catch_fish"))

    assert construct.job_role("catch_fish") is not construct.shared_job_role
    granted = [
        policy["Properties"]["Roles"]
        for template in templates_of(stack).values()
        for policy in resources_of_type(template, "AWS::IAM::Policy").values()
        if "catches-example" in json.dumps(policy["Properties"]["PolicyDocument"])
    ]
    assert granted == [[{"Ref": logical_id(construct.job_role("catch_fish"))}]]
    with pytest.raises(ValueError, match="own_roles names cach_fish, not jobs of workflow 'catch_the_fish'"):
        Workflow(stack, "Misspelled", _props(stack, catch_the_fish(), own_roles=("cach_fish",)))


def test_a_job_with_permissions_runs_with_its_own_role_in_its_stack():
    own_statement = Permission(actions=("s3:GetObject",), resources=("arn:aws:s3:::catches-example/*",))
    _, built = synthesize([with_job_changes(catch_the_fish(), catch_fish={"permissions": (own_statement,)})])
    construct = built.workflows[WORKFLOW]

    own = construct.job_role("catch_fish")

    assert construct.job_function("catch_fish").role is own
    assert Stack.of(own) is Stack.of(construct.job_function("catch_fish"))
    others = {id(construct.job_roles[job]) for job in construct.job_functions if job != "catch_fish"}
    assert others == {id(construct.shared_job_role)}
    assert id(own) not in others


def test_a_grant_to_the_role_of_a_job_with_permissions_reaches_that_job_only():
    own = Permission(actions=("s3:GetObject",), resources=("arn:aws:s3:::catches-example/landing/*",))
    app, built = synthesize([with_job_changes(catch_the_fish(), catch_fish={"permissions": (own,)})])
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
    reconciler_target = {"Target": {"Arn": {"Fn::GetAtt": [reconciler_id, "Arn"]}}}
    [schedule] = fish_template.find_resources(
        "AWS::Scheduler::Schedule", {"Properties": reconciler_target}
    ).values()
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
