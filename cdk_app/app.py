"""The CDK app: a shared stack (dependency layer, MongoDB secret, event bus and trigger) and one
stack per workflow spec, checked by cdk-nag's AWS Solutions pack during synthesis."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from aws_cdk import App, CfnOutput, Stack, Tags, Validations
from cdk_nag import AwsSolutionsChecks

from cdk_app.config import AppConfig, ConfigError
from constructs import Construct
from constructs.bundling import DependencyLayer, DependencyLayerProps
from constructs.connection import status_key_secret
from constructs.database_access import DatabaseAccess, PasswordAuth
from constructs.networking import PrivateNetwork
from constructs.tracing import TRACING_REQUIREMENTS, exports
from constructs.trigger import StatusEvents, StatusEventsProps, consumed_statuses
from constructs.workflow import Workflow, WorkflowProps
from runtime.definition import model
from runtime.definition.loader import load_workflows
from runtime.errors import SpecError

SHARED_STACK = "Workflows-Shared"

SHARED_VERSION_TAG = "workflows:shared-version"
"""Tag on every taggable resource of a workflow stack, valued ``SharedStack.version``.

Workflow stacks read the layer, secret and bus through weak references (``Fn::GetStackOutput``,
cdk.json's ``@aws-cdk/core:defaultCrossStackReferences``), which never block the shared stack
from replacing what they point at (strong exports would refuse every new layer version). But a
weak reference reads the same in the template whatever it resolves to: a new layer version
would leave every workflow template byte-identical, skipped by the CLI and by CloudFormation,
with functions on a deleted layer version. The tag changes with what the shared stack hands
out, so each function and rule is updated and resolves the new values."""


def workflow_stack_name(workflow: str) -> str:
    """CloudFormation stack names allow ``[A-Za-z0-9-]``; workflow ids are ``[a-z][a-z0-9_]*``."""
    return "Workflow-" + workflow.replace("_", "-")


class SharedStack(Stack):
    """What every workflow stack uses: the layer, the MongoDB secret and the status event bus."""

    def __init__(
        self, scope: Construct, construct_id: str, config: AppConfig, workflows: Sequence[model.Workflow]
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Workflows: dependency layer, MongoDB connection secret, status event bus",
        )
        dependencies = DependencyLayer(self, "Dependencies", DependencyLayerProps())
        self.layer = dependencies.layer
        traced = (
            DependencyLayer(self, "TracedDependencies", DependencyLayerProps(also=(TRACING_REQUIREMENTS,)))
            if any(exports(workflow.tracing or config.tracing) for workflow in workflows)
            else None
        )
        self.traced_layer = traced.layer if traced is not None else None
        """The layer with OpenTelemetry's SDK and exporter besides, for the workflows that export
        their spans (spec or context ``tracing``); None when none does."""
        self.database = DatabaseAccess(
            self,
            "Database",
            config.database,
            config.store,
            workflows=[workflow.name for workflow in workflows],
        )
        self.secret = self.database.secret
        """The connection-string secret in password mode; ``None`` in IAM mode."""
        self.network = PrivateNetwork(self, "Network", config.vpc) if config.vpc is not None else None
        """The VPC every function runs in, and the Atlas private endpoint (context key ``vpc``)."""
        self.status_key = status_key_secret(self, "StatusKey")
        self.status_events = StatusEvents(
            self,
            "StatusEvents",
            StatusEventsProps(
                wiring=config.wiring, store=config.store, forwarded_statuses=consumed_statuses(workflows)
            ),
        )
        handed_out = [
            dependencies.content_hash,
            self.status_events.version,
            config.secret_arn,
            config.secret_name,
        ]
        if not isinstance(config.database, PasswordAuth) or config.database.kms_key_arn or config.vpc:
            handed_out += [repr(config.database), repr(config.vpc)]  # only then: today's hash is kept
        if traced is not None:
            handed_out.append(traced.content_hash)
        self._version = hashlib.sha256(json.dumps(handed_out).encode()).hexdigest()[:16]
        CfnOutput(
            self,
            "StatusKeySecretArn",
            value=self.status_key.secret_arn,
            description="The status signing key: operators set WORKFLOWS_STATUS_KEY_SECRET_ARN to this",
        )
        if self.secret is not None:
            CfnOutput(
                self,
                "MongoDbSecretArn",
                value=self.secret.secret_arn,
                description="Put the MongoDB connection string here (aws secretsmanager put-secret-value)",
            )

    @property
    def version(self) -> str:
        """A hash of everything this stack hands the workflow stacks whose value can change
        (see ``SHARED_VERSION_TAG``)."""
        return self._version


@dataclass(frozen=True)
class WorkflowApp:
    shared: SharedStack
    workflows: Mapping[str, Workflow]
    """Workflow id -> its construct (each in its own stack)."""


def build(app: App, config: AppConfig, workflows: Sequence[model.Workflow]) -> WorkflowApp:
    """Adds the shared stack and one stack per workflow to ``app``."""
    shared = SharedStack(app, SHARED_STACK, config, workflows)
    constructs: dict[str, Workflow] = {}
    for workflow in workflows:
        stack = Stack(
            app,
            workflow_stack_name(workflow.name),
            description=f"Workflow {workflow.name}: {workflow.description}".rstrip(": "),
        )
        construct = Workflow(
            stack,
            "Workflow",
            WorkflowProps(
                workflow=workflow,
                event_bus=shared.status_events.event_bus,
                event_source_prefix=shared.status_events.source_prefix,
                status_key=shared.status_key,
                database=shared.database,
                network=shared.network,
                layer=shared.layer,
                traced_layer=shared.traced_layer,
                tracing=config.tracing,
                store=config.store,
                reconcile_schedule=config.reconcile_schedule,
                delivery=config.delivery,
            ),
        )
        Tags.of(stack).add(SHARED_VERSION_TAG, shared.version)
        add_outputs(stack, construct, shared)
        constructs[workflow.name] = construct
    return WorkflowApp(shared=shared, workflows=MappingProxyType(constructs))


def add_outputs(stack: Stack, workflow: Workflow, shared: SharedStack) -> None:
    """What ``cdk deploy`` prints: enough to start a run, read its logs and set the secret."""
    outputs = [
        ("StarterFunctionName", workflow.starter.function_name, "Invoke to start a run"),
        ("TopicArn", workflow.topic.topic_arn, "Notifications and alarms"),
        ("LogGroupName", workflow.log_group.log_group_name, "Every function of the workflow logs here"),
    ]
    if shared.secret is not None:
        outputs.insert(
            2,
            (
                "MongoDbSecretArn",
                shared.secret.secret_arn,
                "The MongoDB connection string every function reads",
            ),
        )
    for output_id, value, description in outputs:
        CfnOutput(stack, output_id, value=value, description=description)


def main() -> None:
    """``cdk synth``'s entry point (app.py). CDK's built-in CloudFormation validation is off:
    cfn-lint, pinned and run over every template by ``make lint`` and the tests, checks the same
    templates more thoroughly, and the built-in pass would add about two seconds to every synth."""
    synth(App(builtin_cloud_formation_validation=False))


def synth(app: App) -> None:
    """Load the specs named by ``app``'s context, build, check, synthesize. Problems in specs or
    context are printed as lines, exit status 1, no traceback."""
    try:
        config = AppConfig.from_context(app.node)
        workflows = load_workflows([config.workflows_dir])
        # Building installs job requirements, which can fail like a spec (named job and package).
        build(app, config, workflows)
    except (SpecError, ConfigError) as error:
        print(error, file=sys.stderr)
        sys.exit(1)
    add_checks(app)
    app.synth()


def add_checks(app: App) -> None:
    """cdk-nag's AWS Solutions pack as a policy validation plugin: any finding not acknowledged
    (with a reason, next to the construct it concerns) fails the synthesis, so `cdk synth`,
    `make synth` and `make lint` fail too."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
