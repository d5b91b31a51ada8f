"""The app as a whole: stacks, configuration, logical id stability, scale, cdk-nag, the CDK CLI
and cfn-lint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks

from cdk_app.app import SHARED_STACK, add_checks, synth, workflow_stack_name
from cdk_app.config import DEFAULT_WIRING, AppConfig, ConfigError
from constructs.database_access import IamAuth, PasswordAuth
from constructs.networking import VpcPlacement
from constructs.trigger import AtlasTrigger, ExistingEventBus, PartnerEventSource
from runtime.definition.loader import load_workflow, load_workflows
from tests.cdk_fixtures import (
    NODE_BIN,
    REPO,
    generated_workflow,
    logical_id,
    make_app,
    resources_of_type,
    synthesize,
    templates_of,
)

ATLAS = {"atlasProjectId": "proj-1", "atlasAppId": "app-1", "atlasServiceId": "svc-1"}
CLOUDFORMATION_RESOURCE_LIMIT = 500
CLOUDFORMATION_TEMPLATE_BYTES = 1_000_000
"""A template deployed from S3 (nested stacks are) may have up to 1 MB."""
IAM_ROLE_POLICY_CHARS = 10_240
"""IAM's limit on the inline policies of one role, together."""


def logical_ids(templates: dict[str, dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(stack path, logical id) -> resource type."""
    return {
        (path, logical_id): resource["Type"]
        for path, template in templates.items()
        for logical_id, resource in template["Resources"].items()
    }


# --- configuration -------------------------------------------------------------------------


def test_defaults_need_no_account_and_listen_on_the_default_bus():
    config = AppConfig.from_mapping({})

    assert config.wiring == DEFAULT_WIRING == ExistingEventBus(name_or_arn="default")
    assert config.workflows_dir == Path("workflows")
    assert (config.secret_arn, config.secret_name) == (None, None)


def test_the_database_mode_is_password_unless_iam_is_asked_for_or_the_cluster_address_is_given():
    secret = "arn:aws:secretsmanager:us-east-1:111111111111:secret:mongodb-AbCdEf"
    iam = {"mongodbUri": "mongodb+srv://c.example.net", "atlasProjectId": "p", "atlasProfile": "ops"}

    assert AppConfig.from_mapping({}).database == PasswordAuth()
    assert AppConfig.from_mapping({"mongodbSecretArn": secret}).database == PasswordAuth(secret_arn=secret)
    assert AppConfig.from_mapping(iam).database == IamAuth(
        project_id="p", cluster_uri="mongodb+srv://c.example.net", profile="ops"
    )
    assert (
        AppConfig.from_mapping(iam | {"mongodbAuth": "iam"}).database == AppConfig.from_mapping(iam).database
    )
    assert AppConfig.from_mapping(iam).wiring == DEFAULT_WIRING, "the project id alone selects no trigger"
    assert AppConfig.from_mapping(ATLAS | iam).wiring == AtlasTrigger(
        project_id="p", app_id="app-1", service_id="svc-1", profile="ops"
    )


def test_vpc_context_selects_private_networking():
    placement = AppConfig.from_mapping(
        {
            "vpc": "vpc-0123456789abcdef0",
            "vpcSubnetIds": "subnet-0123456789abcdef0, subnet-0fedcba9876543210",
            "atlasProjectId": "p",
        }
    ).vpc

    assert placement == VpcPlacement(
        project_id="p",
        vpc_id="vpc-0123456789abcdef0",
        subnet_ids=("subnet-0123456789abcdef0", "subnet-0fedcba9876543210"),
    )
    assert AppConfig.from_mapping({"vpc": "create", "atlasProjectId": "p"}).vpc == VpcPlacement(
        project_id="p"
    )
    assert AppConfig.from_mapping({}).vpc is None
    listed = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]  # as cdk.json may give them
    context = {"vpc": "vpc-0123456789abcdef0", "vpcSubnetIds": listed, "atlasProjectId": "p"}
    assert AppConfig.from_mapping(context).vpc == placement


def test_atlas_ids_select_the_atlas_wiring():
    config = AppConfig.from_mapping(ATLAS | {"atlasProfile": "ops", "mongodbDatabase": "fishing"})

    assert config.wiring == AtlasTrigger(
        project_id="proj-1", app_id="app-1", service_id="svc-1", profile="ops"
    )
    assert config.store.database == "fishing"


@pytest.mark.parametrize(
    ("context", "wiring"),
    [
        ({"partnerEventSource": "aws.partner/mongodb.com/stitch.trigger/1"}, PartnerEventSource),
        ({"eventBus": "statuses"}, ExistingEventBus),
    ],
    ids=["partner-source", "bus"],
)
def test_other_wirings_from_context(context, wiring):
    assert isinstance(AppConfig.from_mapping(context).wiring, wiring)


def test_event_source_prefix_from_context_applies_to_the_bus():
    assert AppConfig.from_mapping({"eventSourcePrefix": "com.example."}).wiring == ExistingEventBus(
        name_or_arn="default", source_prefix="com.example."
    )
    assert AppConfig.from_mapping({"eventBus": "statuses"}).wiring == ExistingEventBus(
        name_or_arn="statuses", source_prefix="aws.partner/mongodb.com/stitch.trigger/"
    )


@pytest.mark.parametrize(("value", "exists"), [(True, True), ("true", True), ("false", False), (None, False)])
def test_partner_event_bus_exists_from_context(value, exists):
    source = "aws.partner/mongodb.com/stitch.trigger/1"

    config = AppConfig.from_mapping({"partnerEventSource": source, "partnerEventBusExists": value})

    assert config.wiring == PartnerEventSource(name=source, bus_exists=exists)


@pytest.mark.parametrize(
    ("context", "problem"),
    [
        ({"atlasProjectId": "p"}, "the atlas wiring also needs atlasAppId, atlasServiceId"),
        (ATLAS | {"eventBus": "x"}, "Atlas ids and eventBus select different trigger wirings"),
        ({"atlasProfile": "ops"}, "atlasProfile only apply with atlasProjectId"),
        ({"mongodbSecretArn": "arn:x", "mongodbSecretName": "y"}, "not both"),
        (
            {"mongodbSecretArn": "arn:aws:secretsmanager:us-east-1:111111111111:secret:mongodb"},
            "is not a complete Secrets Manager ARN",
        ),
        ({"mongodbDatabase": "a.b"}, "mongodbDatabase 'a.b' is not a usable MongoDB name"),
        ({"statusesCollection": "$cmd"}, "statusesCollection '\\$cmd' is not a usable MongoDB name"),
        ({"partnerEventBusExists": "true"}, "partnerEventBusExists only applies with partnerEventSource"),
        (
            {"partnerEventSource": "aws.partner/x", "partnerEventBusExists": "yes"},
            "partnerEventBusExists must be true or false, not 'yes'",
        ),
        ({"reconcileSchedule": "every 5 minutes"}, "reconcileSchedule 'every 5 minutes' is not a schedule"),
        (
            {"partnerEventSource": "aws.partner/x", "eventSourcePrefix": "my."},
            "eventSourcePrefix only applies with eventBus, not with partnerEventSource",
        ),
        (
            ATLAS | {"eventSourcePrefix": "my."},
            "eventSourcePrefix only applies with eventBus, not with Atlas ids",
        ),
        ({"mongodbAuth": "x509"}, "mongodbAuth must be iam or password, not 'x509'"),
        ({"mongodbAuth": "iam", "atlasProjectId": "p"}, "mongodbAuth=iam needs mongodbUri"),
        ({"mongodbUri": "mongodb+srv://c.example.net"}, "mongodbAuth=iam needs atlasProjectId"),
        (
            {"mongodbUri": "mongodb+srv://u:pw@c.example.net", "atlasProjectId": "p"},
            "mongodbUri must be the cluster's mongodb\\+srv:// \\(or mongodb://\\) address without a user",
        ),
        (
            {
                "mongodbAuth": "iam",
                "mongodbUri": "mongodb+srv://c.example.net",
                "atlasProjectId": "p",
                "mongodbSecretName": "s",
            },
            "mongodbSecretName is the password secret's; mongodbAuth=iam reads no secret",
        ),
        (
            {"mongodbAuth": "password", "mongodbUri": "mongodb+srv://c"},
            "mongodbUri only applies with mongodbAuth=iam",
        ),
        (
            {"mongodbSecretName": "s", "mongodbSecretKmsKeyArn": "alias/mine"},
            "mongodbSecretKmsKeyArn 'alias/mine' is not a KMS key ARN",
        ),
        (
            {"mongodbSecretKmsKeyArn": "arn:aws:kms:eu-west-1:111111111111:key/k-1"},
            "mongodbSecretKmsKeyArn only applies with mongodbSecretArn or mongodbSecretName",
        ),
        ({"vpc": "create"}, "vpc needs atlasProjectId"),
        ({"vpc": "default", "atlasProjectId": "p"}, "vpc must be create or a VPC id"),
        ({"vpc": "vpc-0123456789abcdef0", "atlasProjectId": "p"}, "needs vpcSubnetIds"),
        (
            {"vpc": "vpc-0123456789abcdef0", "vpcSubnetIds": "subnet-1,x", "atlasProjectId": "p"},
            "vpcSubnetIds has 'subnet-1', 'x', not a subnet id",
        ),
        (
            {"vpc": "create", "vpcSubnetIds": "subnet-0123456789abcdef0", "atlasProjectId": "p"},
            "not vpc=create",
        ),
        ({"vpcSubnetIds": "subnet-0123456789abcdef0"}, "vpcSubnetIds only applies with vpc"),
    ],
    ids=[
        "partial-atlas",
        "two-wirings",
        "stray-profile",
        "two-secrets",
        "partial-arn",
        "db-name",
        "coll-name",
        "stray-bus-exists",
        "bus-exists-not-bool",
        "reconcile-schedule",
        "source-prefix-with-partner",
        "source-prefix-with-atlas",
        "auth-mode",
        "iam-without-uri",
        "iam-without-project",
        "uri-with-password",
        "iam-with-secret",
        "uri-in-password-mode",
        "kms-alias",
        "kms-without-secret",
        "vpc-without-project",
        "vpc-not-an-id",
        "vpc-without-subnets",
        "bad-subnets",
        "subnets-with-create",
        "stray-subnets",
    ],
)
def test_contradictory_context_is_refused(context, problem):
    with pytest.raises(ConfigError, match=problem):
        AppConfig.from_mapping(context)


# --- main(): what `cdk synth` runs ---------------------------------------------------------


def run_main(context: dict[str, Any]) -> None:
    synth(make_app(**context))


def test_spec_errors_are_printed_as_problem_lines_and_exit_1(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("workflow: Broken-Name\nphases: {}\n")

    with pytest.raises(SystemExit) as exit_info:
        run_main({"workflowsDir": str(tmp_path)})

    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{tmp_path / 'broken.yaml'}: $")
    assert "Traceback" not in err


def test_config_errors_are_printed_and_exit_1(capsys):
    with pytest.raises(SystemExit, match="1"):
        run_main({"atlasProjectId": "p"})

    assert "the atlas wiring also needs atlasAppId" in capsys.readouterr().err


# --- stacks --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo_app():
    """Every spec in workflows/, Atlas wiring: what `cdk deploy` would deploy."""
    config = AppConfig.from_mapping(ATLAS)
    return synthesize(load_workflows([REPO / "workflows"]), config)


def test_one_stack_per_workflow_plus_the_shared_stack(repo_app):
    app, built = repo_app

    names = sorted(child.node.id for child in app.node.children if isinstance(child, Stack))

    assert names == sorted([SHARED_STACK, *(workflow_stack_name(name) for name in built.workflows)])
    assert workflow_stack_name("catch_the_fish") == "Workflow-catch-the-fish"


def test_shared_stack_holds_layer_secret_bus_and_trigger(repo_app):
    _, built = repo_app

    template = Template.from_stack(built.shared)

    template.resource_count_is("AWS::Lambda::LayerVersion", 1)
    # The connection string's placeholder, and the status key (docs/architecture.md, "Trust").
    template.resource_count_is("AWS::SecretsManager::Secret", 2)
    template.resource_count_is("AWS::Events::EventBus", 1)
    template.resource_count_is("MongoDB::Atlas::Trigger", 1)
    template.has_resource_properties(
        "AWS::SecretsManager::Secret", {"GenerateSecretString": {"SecretStringTemplate": '{"uri": ""}'}}
    )


def test_every_function_of_every_workflow_uses_the_one_layer(repo_app):
    _, built = repo_app
    layers = [
        json.dumps(function["Properties"]["Layers"], sort_keys=True)
        for construct in built.workflows.values()
        for template in templates_of(Stack.of(construct)).values()
        for function in resources_of_type(template, "AWS::Lambda::Function").values()
    ]

    assert len(layers) > 3 * len(built.workflows)
    assert len(set(layers)) == 1
    assert "DependenciesLayer" in layers[0]  # the shared stack's layer, read across stacks


def test_an_existing_secret_is_referenced_not_created():
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:workflows/mongodb-AbCdEf"
    _, built = synthesize(
        [generated_workflow("tiny", 1, phases=1)], AppConfig.from_mapping({"mongodbSecretArn": arn})
    )

    secrets = Template.from_stack(built.shared).find_resources("AWS::SecretsManager::Secret")
    assert [logical_id for logical_id in secrets if not logical_id.startswith("StatusKey")] == []
    Template.from_stack(Stack.of(built.workflows["tiny"])).has_resource_properties(
        "AWS::Lambda::Function", {"Environment": {"Variables": {"MONGODB_SECRET_ARN": arn}}}
    )


# --- stability and scale -------------------------------------------------------------------


def test_adding_a_phase_and_a_job_only_adds_resources(tmp_path):
    spec = (REPO / "workflows" / "catch_the_fish.yaml").read_text()
    before = load_workflow(REPO / "workflows" / "catch_the_fish.yaml")
    grown_spec = tmp_path / "catch_the_fish.yaml"
    grown_spec.write_text(
        spec.replace(
            "      cook: {after: [clean]}\n", "      cook: {after: [clean]}\n      wash_up: {after: [cook]}\n"
        ).replace("notify:", "  eating:\n    jobs:\n      eat: {}\n      nap: {after: [eat]}\nnotify:")
    )
    after = load_workflow(grown_spec)
    assert len(after.phases) == len(before.phases) + 1
    assert sum(1 for _ in after.jobs()) == sum(1 for _ in before.jobs()) + 3

    first = logical_ids(templates_of(Stack.of(synthesize([before])[1].workflows["catch_the_fish"])))
    second = logical_ids(templates_of(Stack.of(synthesize([after])[1].workflows["catch_the_fish"])))

    missing_or_changed = {key: kind for key, kind in first.items() if second.get(key) != kind}
    assert missing_or_changed == {}
    assert len(second) > len(first)


def test_five_hundred_jobs_fit_the_per_stack_resource_limit():
    workflow = generated_workflow("big", 500)
    started = time.perf_counter()
    _, built = synthesize([workflow])
    templates = templates_of(Stack.of(built.workflows["big"]))
    seconds = time.perf_counter() - started

    counts = {path: len(template["Resources"]) for path, template in templates.items()}
    print(f"500-job synth: {seconds:.1f}s, resources per stack: {counts}")
    assert max(counts.values()) <= CLOUDFORMATION_RESOURCE_LIMIT
    functions = sum(len(resources_of_type(t, "AWS::Lambda::Function")) for t in templates.values())
    assert functions == 500 + 4  # the jobs, orchestrator, notifier, starter and reconciler
    assert max(len(json.dumps(template)) for template in templates.values()) < CLOUDFORMATION_TEMPLATE_BYTES
    roles = sum(len(resources_of_type(t, "AWS::IAM::Role")) for t in templates.values())
    # the jobs' shared role (none has permissions), the system functions', the schedule's: not one per job
    assert roles == 1 + 5
    policies = [p for t in templates.values() for p in resources_of_type(t, "AWS::IAM::Policy").values()]
    assert max(len(json.dumps(p["Properties"]["PolicyDocument"])) for p in policies) < IAM_ROLE_POLICY_CHARS


# --- cdk-nag -------------------------------------------------------------------------------


def nag_findings(app) -> list[str]:
    report = AwsSolutionsChecks().validate_scope(app)
    return [
        f"{violation.rule_name} at {resource.construct_path} ({violation.severity})"
        for violation in report.violations
        for resource in violation.violating_resources
    ]


def test_no_unacknowledged_cdk_nag_findings(repo_app):
    app, _ = repo_app

    assert nag_findings(app) == []


def test_no_unacknowledged_cdk_nag_findings_with_slack_schedule_and_existing_secret(fish_workflow):
    config = AppConfig.from_mapping(
        {
            "mongodbSecretName": "workflows/mongodb",
            "partnerEventSource": "aws.partner/mongodb.com/stitch.trigger/65f0c0ffee",
        }
    )
    app, _ = synthesize([fish_workflow], config)

    assert nag_findings(app) == []


def test_an_unacknowledged_finding_fails_the_synthesis(tmp_path):
    app = make_app()
    synthesize_into = Stack(app, "Extra")
    sqs.Queue(synthesize_into, "PlainQueue")
    add_checks(app)

    with pytest.raises(RuntimeError, match=r"AwsSolutions-SQS(3|4)"):
        app.synth()


# --- the CLI, cfn-lint ----------------------------------------------------------------------


def test_constructs_extends_the_library_namespace():
    assert not (REPO / "constructs" / "__init__.py").exists()
    code = (
        "import aws_cdk; from constructs import Construct; import constructs.workflow; "
        "print(Construct.__module__)"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("constructs")


@pytest.mark.synth
def test_cdk_cli_synth_then_cfn_lint(tmp_path):
    specs = tmp_path / "specs"
    (specs / "jobs").mkdir(parents=True)
    shutil.copy(REPO / "workflows" / "catch_the_fish.yaml", specs / "catch_the_fish.yaml")
    (specs / "jobs" / "gear.py").write_text("def handler(event, context):\n    return {'rod': 1}\n")
    spec = specs / "catch_the_fish.yaml"
    spec.write_text(
        spec.read_text().replace("buy_fishing_gear: {}", "buy_fishing_gear: {code: jobs/gear.py}")
    )
    outdir = tmp_path / "cdk.out"
    env = os.environ | {
        "PATH": os.pathsep.join([str(REPO / ".venv" / "bin"), str(NODE_BIN), os.environ["PATH"]])
    }
    context = ["-c", f"workflowsDir={specs}"] + [
        arg for key, value in ATLAS.items() for arg in ("-c", f"{key}={value}")
    ]

    started = time.perf_counter()
    synth = subprocess.run(
        ["cdk", "synth", "--quiet", "--output", str(outdir), *context],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    print(f"cdk synth (CLI): {time.perf_counter() - started:.1f}s")

    assert synth.returncode == 0, synth.stderr
    templates = sorted(outdir.glob("*.template.json"))
    assert any(path.name.endswith(".nested.template.json") for path in templates)
    report = json.loads((outdir / "validation-report.json").read_text())
    assert report["pluginReports"] == []
    lint = subprocess.run(
        [str(REPO / ".venv" / "bin" / "cfn-lint"), "--ignore-checks", "W3005", "--", *map(str, templates)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_workflow_stacks_output_what_a_deploy_needs_next(repo_app):
    _, built = repo_app
    construct = built.workflows["catch_the_fish"]

    outputs = Template.from_stack(Stack.of(construct)).to_json()["Outputs"]

    assert outputs["StarterFunctionName"]["Value"] == {"Ref": logical_id(construct.starter)}
    assert outputs["TopicArn"]["Value"] == {"Ref": logical_id(construct.topic)}
    assert outputs["LogGroupName"]["Value"] == {"Ref": logical_id(construct.log_group)}
    assert "Fn::GetStackOutput" in outputs["MongoDbSecretArn"]["Value"]
    shared_outputs = Template.from_stack(built.shared).to_json()["Outputs"]
    assert shared_outputs["MongoDbSecretArn"]["Value"] == {"Ref": logical_id(built.shared.secret)}
