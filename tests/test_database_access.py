"""Database identities and private networking in the synthesized templates (issue 22, T3 and T4,
items 2 and 5): IAM mode's custom roles and database users, what a job's roles may reach, the
password mode's secret and key, and the VPC with its Atlas private endpoint."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from aws_cdk import Stack

from cdk_app.app import WorkflowApp
from cdk_app.config import AppConfig
from constructs.database_access import (
    CREATE_COLLECTION,
    FIND,
    INSERT,
    JOB_DATABASE_TAG,
    REMOVE,
    UPDATE,
    custom_role_name,
    job_privileges,
    privileges,
)
from runtime.documents.outputs import OUTPUT_CHUNKS, OUTPUT_FILES, OUTPUTS
from runtime.store.settings import StoreSettings
from tests.cdk_fixtures import catch_the_fish, generated_workflow, resources_of_type, synthesize, templates_of

PROJECT = "5f0000000000000000000001"
CLUSTER = "mongodb+srv://cluster0.ab1cd.mongodb.net"
IAM = {"mongodbAuth": "iam", "mongodbUri": CLUSTER, "atlasProjectId": PROJECT}
KMS_KEY = "arn:aws:kms:eu-west-1:111111111111:key/0a1b2c3d-0000-4000-8000-000000000001"
STORE = StoreSettings()


def _all_templates(built: WorkflowApp) -> dict[str, dict[str, Any]]:
    found = {built.shared.node.path: templates_of(built.shared)[built.shared.node.path]}
    for construct in built.workflows.values():
        found |= templates_of(Stack.of(construct))
    return found


@pytest.fixture(scope="module")
def iam_app() -> tuple[WorkflowApp, dict[str, dict[str, Any]]]:
    _, built = synthesize(
        [catch_the_fish(), generated_workflow("other_flow", 40, phases=4)], AppConfig.from_mapping(IAM)
    )
    return built, _all_templates(built)


def _of_type(templates: Mapping[str, dict[str, Any]], type_: str) -> dict[str, dict[str, Any]]:
    return {
        f"{path}/{key}": resource
        for path, template in templates.items()
        for key, resource in resources_of_type(template, type_).items()
    }


def _custom_role(templates: Mapping[str, dict[str, Any]], function_class: str) -> dict[str, set[str]]:
    """collection -> actions, read back from the synthesized ``CfnCustomDbRole``."""
    return _role_named(templates, custom_role_name(STORE, function_class))  # type: ignore[arg-type]


def _job_role_of(templates: Mapping[str, dict[str, Any]], workflow: str) -> str:
    """The custom role the database user of ``workflow``'s job functions holds."""
    (user,) = [
        resource["Properties"]
        for resource in _of_type(templates, "MongoDB::Atlas::DatabaseUser").values()
        if resource["Properties"]["Description"] == f"The job functions of workflow {workflow}"
    ]
    ((role,),) = [[held["RoleName"] for held in user["Roles"]]]
    return str(role)


def _role_named(templates: Mapping[str, dict[str, Any]], name: str) -> dict[str, set[str]]:
    (role,) = [
        resource["Properties"]
        for resource in _of_type(templates, "MongoDB::Atlas::CustomDBRole").values()
        if resource["Properties"]["RoleName"] == name
    ]
    granted: dict[str, set[str]] = {}
    for action in role["Actions"]:
        for resource in action["Resources"]:
            assert resource["DB"] == STORE.database
            assert resource["Collection"], "a database-wide grant"
            assert "Cluster" not in resource
            granted.setdefault(resource["Collection"], set()).add(action["Action"])
    return granted


# --- T3: what the job class may do in MongoDB ----------------------------------------------


WORKFLOWS = ("catch_the_fish", "other_flow")
BASE_COLLECTIONS = {
    STORE.runs_collection,
    STORE.statuses_collection,
    STORE.leases_collection,
    STORE.items_collection,
    OUTPUTS,
    OUTPUT_FILES,
    OUTPUT_CHUNKS,
}


def _views_of(workflow: str) -> set[str]:
    """The read views of ``workflow`` (runtime/documents/views.py), spelled out."""
    return {f"views.{workflow}.{collection}" for collection in BASE_COLLECTIONS}


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_t3_a_workflows_job_role_reads_only_that_workflows_views(iam_app, workflow) -> None:
    granted = _role_named(iam_app[1], _job_role_of(iam_app[1], workflow))

    reading = {collection for collection, actions in granted.items() if FIND in actions}
    assert reading & BASE_COLLECTIONS == set(), "a job reads no collection itself, only views"
    assert reading == _views_of(workflow)
    assert {name for name, actions in granted.items() if actions == {FIND}} == _views_of(workflow)
    for other in WORKFLOWS:
        if other != workflow:
            assert not set(granted) & _views_of(other), f"{workflow}'s jobs read nothing of {other}"


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_t3_the_job_role_cannot_change_runs_or_remove_anything(iam_app, workflow) -> None:
    granted = _role_named(iam_app[1], _job_role_of(iam_app[1], workflow))

    assert STORE.runs_collection not in granted, "a job may only read whether its attempt is wanted"
    runs_view = f"views.{workflow}.{STORE.runs_collection}"
    assert granted[runs_view] == {FIND}, "a job may only read whether its attempt is wanted"
    assert all(REMOVE not in actions for actions in granted.values())
    assert UPDATE not in granted[STORE.statuses_collection], "a report once written is never rewritten"
    assert UPDATE not in granted[OUTPUTS], "nor an output kept by reference, of any workflow"
    inserting = {collection for collection, actions in granted.items() if INSERT in actions}
    assert inserting == {
        STORE.statuses_collection,
        STORE.leases_collection,
        OUTPUTS,
        OUTPUT_FILES,
        OUTPUT_CHUNKS,
    }
    assert STORE.notifications_collection not in granted
    assert all(CREATE_COLLECTION not in actions for name, actions in granted.items() if name != "leases")


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_t3_the_job_role_reaches_only_the_apps_collections_of_the_configured_database(
    iam_app, workflow
) -> None:
    granted = _role_named(iam_app[1], _job_role_of(iam_app[1], workflow))

    writing = {STORE.statuses_collection, STORE.leases_collection, OUTPUTS, OUTPUT_FILES, OUTPUT_CHUNKS}
    assert set(granted) == _views_of(workflow) | writing


@pytest.mark.parametrize("function_class", ["orchestrator", "reconciler", "starter", "notifier"])
def test_each_custom_role_is_the_privilege_table_of_its_class(iam_app, function_class) -> None:
    expected = {name: set(actions) for name, actions in privileges(STORE, WORKFLOWS)[function_class].items()}
    assert _custom_role(iam_app[1], function_class) == expected


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_each_job_role_is_the_privilege_table_of_its_workflow(iam_app, workflow) -> None:
    expected = {name: set(actions) for name, actions in job_privileges(STORE, workflow).items()}
    assert _job_role_of(iam_app[1], workflow) == custom_role_name(STORE, "job", workflow)
    assert _role_named(iam_app[1], custom_role_name(STORE, "job", workflow)) == expected


@pytest.mark.parametrize("function_class", ["reconciler", "starter"])
def test_the_functions_that_make_the_views_may_make_every_workflows(iam_app, function_class) -> None:
    granted = _custom_role(iam_app[1], function_class)

    for workflow in WORKFLOWS:
        for view in _views_of(workflow):
            assert granted[view] == {CREATE_COLLECTION}
    assert all(FIND in granted[collection] for collection in BASE_COLLECTIONS), "a view's source is read"


def test_database_users_are_five_per_workflow_whatever_the_number_of_jobs(iam_app) -> None:
    built, templates = iam_app
    for name, construct in built.workflows.items():
        stack_templates = templates_of(Stack.of(construct))
        users = _of_type(stack_templates, "MongoDB::Atlas::DatabaseUser")
        assert len(users) == 5, name
        for user in users.values():
            properties = user["Properties"]
            assert (properties["AWSIAMType"], properties["DatabaseName"]) == ("ROLE", "$external")
            assert properties["ProjectId"] == PROJECT
            assert "Password" not in properties
        assert len(construct.job_roles) in (9, 40)
    # One per class of our functions, and one job role per workflow.
    assert len(_of_type(templates, "MongoDB::Atlas::CustomDBRole")) == 4 + len(built.workflows)


def test_t3_each_workflows_jobs_sign_in_as_its_own_job_database_role(iam_app) -> None:
    built, _ = iam_app
    for name, construct in built.workflows.items():
        parent = Stack.of(construct)
        template = templates_of(parent)[parent.node.path]
        (job_user,) = [
            user["Properties"]
            for user in resources_of_type(template, "MongoDB::Atlas::DatabaseUser").values()
            if user["Properties"]["Roles"]
            == [{"DatabaseName": "admin", "RoleName": custom_role_name(STORE, "job", name)}]
        ]
        database_role_id = job_user["Username"]["Fn::GetAtt"][0]
        trust = template["Resources"][database_role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust == [
            {
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {f"aws:PrincipalTag/{JOB_DATABASE_TAG}": name}},
                "Effect": "Allow",
                "Principal": {
                    "AWS": {
                        "Fn::Join": [
                            "",
                            ["arn:", {"Ref": "AWS::Partition"}, ":iam::", {"Ref": "AWS::AccountId"}, ":root"],
                        ]
                    }
                },
            }
        ]
        job_roles = [
            role["Properties"]
            for nested in templates_of(parent).values()
            for role in resources_of_type(nested, "AWS::IAM::Role").values()
            if role["Properties"].get("Description", "").startswith(("Job ", "The jobs without"))
        ]
        # The jobs without permissions share one role; each job with permissions has its own.
        assert len(job_roles) == len({id(role) for role in construct.job_roles.values()})
        for role in job_roles:
            tags = {tag["Key"]: tag["Value"] for tag in role.get("Tags", [])}
            assert tags[JOB_DATABASE_TAG] == name, role["Description"]


# --- T4: no secret, no password -------------------------------------------------------------


def _statements(templates: Mapping[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for key, policy in _of_type(templates, "AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            yield key, statement


def test_t4_in_iam_mode_no_role_reads_the_database_secret_and_none_exists(iam_app) -> None:
    _, templates = iam_app

    # The one secret made is the status key (docs/architecture.md, "Trust"), no password.
    assert [
        key.rpartition("/")[2][: len("StatusKey")]
        for key in _of_type(templates, "AWS::SecretsManager::Secret")
    ] == ["StatusKey"]
    system = ("OrchestratorRole", "ReconcilerRole", "StarterRole", "NotifierRole")
    for key, statement in _statements(templates):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if any(action.startswith("secretsmanager:") for action in actions):
            resource = json.dumps(statement["Resource"])
            # The status key, read by the system functions; the spec's Slack webhook, by the notifier.
            assert "StatusKey" in resource or "slack-webhook" in resource, key
            assert any(name in key for name in system), key
            assert "slack-webhook" not in resource or "NotifierRole" in key, key


def test_t4_no_template_or_environment_holds_a_password(iam_app) -> None:
    _, templates = iam_app
    text = json.dumps(templates)

    assert not re.search(r'"Password"', text, re.IGNORECASE)
    assert not re.search(r"mongodb(\+srv)?://[^\"/]*@", text), "a user or password in a connection string"
    for key, function in _of_type(templates, "AWS::Lambda::Function").items():
        variables = function["Properties"]["Environment"]["Variables"]
        assert "MONGODB_SECRET_ARN" not in variables, key
        assert (variables["MONGODB_AUTH"], variables["MONGODB_URI"]) == ("MONGODB-AWS", CLUSTER), key
        assert ("MONGODB_ROLE_ARN" in variables) == key.rpartition("/")[2].startswith("Job"), key


# --- password mode: the explicit opt-in ----------------------------------------------------


def _password_templates(**context: str) -> dict[str, dict[str, Any]]:
    _, built = synthesize([catch_the_fish()], AppConfig.from_mapping(context))
    return _all_templates(built)


def test_password_mode_with_a_customer_key_grants_decrypt_through_secrets_manager_only() -> None:
    secret = "arn:aws:secretsmanager:eu-west-1:111111111111:secret:workflows/mongodb-AbCdEf"
    templates = _password_templates(mongodbSecretArn=secret, mongodbSecretKmsKeyArn=KMS_KEY)

    readers = {
        key for key, statement in _statements(templates) if secret in json.dumps(statement["Resource"])
    }
    decrypters = {
        key: statement
        for key, statement in _statements(templates)
        if statement.get("Sid") == "DecryptMongoDbSecret"
    }
    assert readers
    assert set(decrypters) == readers
    for statement in decrypters.values():
        assert statement["Action"] == "kms:Decrypt"
        assert statement["Resource"] == KMS_KEY
        assert statement["Condition"] == {
            "StringEquals": {
                "kms:ViaService": {
                    "Fn::Join": ["", ["secretsmanager.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]
                }
            }
        }
    assert not _of_type(templates, "MongoDB::Atlas::DatabaseUser")


def test_password_mode_without_a_key_grants_no_decrypt() -> None:
    templates = _password_templates(mongodbAuth="password")

    secrets = [key for key in _of_type(templates, "AWS::SecretsManager::Secret") if "StatusKey" not in key]
    assert len(secrets) == 1
    assert not [
        key for key, statement in _statements(templates) if statement.get("Sid") == "DecryptMongoDbSecret"
    ]


# --- private networking (item 5) -----------------------------------------------------------


def _network_templates(**context: str) -> dict[str, dict[str, Any]]:
    _, built = synthesize([catch_the_fish()], AppConfig.from_mapping(IAM | context))
    return _all_templates(built)


def _functions_group(templates: Mapping[str, dict[str, Any]]) -> str:
    (key,) = [
        key.rpartition("/")[2]
        for key, group in _of_type(templates, "AWS::EC2::SecurityGroup").items()
        if "Workflow functions" in group["Properties"]["GroupDescription"]
    ]
    return key


def _check_private(templates: Mapping[str, dict[str, Any]]) -> None:
    functions = _of_type(templates, "AWS::Lambda::Function")
    ours = {
        key: f
        for key, f in functions.items()
        if "MONGODB_DATABASE" in json.dumps(f["Properties"].get("Environment"))
    }
    assert len(ours) == 13
    for key, function in ours.items():
        config = function["Properties"]["VpcConfig"]
        assert config["SubnetIds"], key
        assert len(config["SecurityGroupIds"]) == 1, key
    roles = _of_type(templates, "AWS::IAM::Role")
    used = []
    for key, function in ours.items():
        given = function["Properties"]["Role"]
        if "Fn::GetAtt" not in given:
            # A job in a nested stack with the role the jobs without permissions share: a parameter.
            assert key.rpartition("/")[2].startswith("Job"), key
            continue
        used += [role for path, role in roles.items() if path.endswith("/" + given["Fn::GetAtt"][0])]
    shared = [
        role for role in roles.values() if role["Properties"].get("Description", "").startswith("The jobs")
    ]
    assert len(shared) == 1
    used += shared
    for role in used:
        assert "AWSLambdaVPCAccessExecutionRole" in json.dumps(role["Properties"]["ManagedPolicyArns"])
    (service,) = _of_type(templates, "MongoDB::Atlas::PrivateEndpointService").values()
    assert service["Properties"]["ProjectId"] == PROJECT
    assert service["Properties"]["CloudProvider"] == "AWS"
    ((endpoint_key, endpoint),) = _of_type(templates, "AWS::EC2::VPCEndpoint").items()
    assert endpoint["Properties"]["VpcEndpointType"] == "Interface"
    assert "EndpointServiceName" in json.dumps(endpoint["Properties"]["ServiceName"])
    (registration,) = _of_type(templates, "MongoDB::Atlas::PrivateEndpointAWS").values()
    assert registration["Properties"]["Id"] == {"Ref": endpoint_key.rpartition("/")[2]}
    (ingress,) = _of_type(templates, "AWS::EC2::SecurityGroupIngress").values()
    assert (ingress["Properties"]["FromPort"], ingress["Properties"]["ToPort"]) == (1024, 65535)
    assert ingress["Properties"]["SourceSecurityGroupId"] == {
        "Fn::GetAtt": [_functions_group(templates), "GroupId"]
    }
    assert "0.0.0.0/0" not in json.dumps(ingress)


def test_vpc_create_puts_every_function_in_private_subnets_behind_the_atlas_private_endpoint() -> None:
    templates = _network_templates(vpc="create")

    _check_private(templates)
    assert len(_of_type(templates, "AWS::EC2::VPC")) == 1
    assert _of_type(templates, "AWS::EC2::FlowLog")


def test_an_existing_vpc_uses_the_given_private_subnets_and_makes_no_vpc() -> None:
    subnets = "subnet-0123456789abcdef0,subnet-0fedcba9876543210"
    templates = _network_templates(vpc="vpc-0123456789abcdef0", vpcSubnetIds=subnets)

    _check_private(templates)
    assert not _of_type(templates, "AWS::EC2::VPC")
    text = json.dumps(templates)
    assert "zone-of-" not in text
    for key, function in _of_type(templates, "AWS::Lambda::Function").items():
        if "MONGODB_DATABASE" in json.dumps(function["Properties"]["Environment"]):
            assert function["Properties"]["VpcConfig"]["SubnetIds"] == subnets.split(","), key


def test_without_vpc_no_function_is_in_a_vpc(iam_app) -> None:
    _, templates = iam_app
    assert not any(
        "VpcConfig" in f["Properties"] for f in _of_type(templates, "AWS::Lambda::Function").values()
    )
    assert not _of_type(templates, "MongoDB::Atlas::PrivateEndpointService")
