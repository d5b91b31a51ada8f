"""The CDK app: a shared stack (dependency layer, MongoDB secret, event bus and trigger) and one
stack per workflow spec, checked by cdk-nag's AWS Solutions pack during synthesis."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from aws_cdk import Acknowledgment, App, Stack, Validations
from aws_cdk import aws_secretsmanager as secretsmanager
from cdk_nag import AwsSolutionsChecks

from cdk_app.config import AppConfig, ConfigError
from constructs import Construct
from constructs.bundling import DependencyLayer, DependencyLayerProps
from constructs.lambda_code import RUNTIME_PACKAGE
from constructs.trigger import StatusEvents, StatusEventsProps
from constructs.workflow import Workflow, WorkflowProps
from runtime.definition import model
from runtime.errors import SpecError

SHARED_STACK = "Workflows-Shared"

REQUIREMENTS = RUNTIME_PACKAGE / "requirements.txt"
"""What the dependency layer installs (pymongo; boto3 and jmespath come with Lambda)."""


def workflow_stack_name(workflow: str) -> str:
    """CloudFormation stack names allow ``[A-Za-z0-9-]``; workflow ids are ``[a-z][a-z0-9_]*``."""
    return "Workflow-" + workflow.replace("_", "-")


class SharedStack(Stack):
    """What every workflow stack uses: the layer, the MongoDB secret and the status event bus."""

    def __init__(self, scope: Construct, construct_id: str, config: AppConfig) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Workflows: dependency layer, MongoDB connection secret, status event bus",
        )
        self.layer = DependencyLayer(
            self, "Dependencies", DependencyLayerProps(requirements=REQUIREMENTS)
        ).layer
        self.secret = self._mongodb_secret(config)
        self.status_events = StatusEvents(
            self, "StatusEvents", StatusEventsProps(wiring=config.wiring, store=config.store)
        )

    def _mongodb_secret(self, config: AppConfig) -> secretsmanager.ISecret:
        if config.secret_arn is not None:
            return secretsmanager.Secret.from_secret_complete_arn(self, "MongoDbSecret", config.secret_arn)
        if config.secret_name is not None:
            return secretsmanager.Secret.from_secret_name_v2(self, "MongoDbSecret", config.secret_name)
        secret = secretsmanager.Secret(
            self,
            "MongoDbSecret",
            description="MongoDB connection string for the workflows: put the URI here after deploying",
            # A placeholder, not a credential: the real URI is set by hand after the first deploy
            # and never passes through a template.
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template='{"uri": ""}', generate_string_key="placeholder"
            ),
        )
        Validations.of(secret).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SMG4",
                reason="The connection string is issued by MongoDB Atlas; it is rotated there and then "
                "pasted into this secret, which Secrets Manager cannot do on its own schedule.",
            )
        )
        return secret


@dataclass(frozen=True)
class WorkflowApp:
    shared: SharedStack
    workflows: Mapping[str, Workflow]
    """Workflow id -> its construct (each in its own stack)."""


def build(app: App, config: AppConfig, workflows: Sequence[model.Workflow]) -> WorkflowApp:
    """Adds the shared stack and one stack per workflow to ``app``."""
    shared = SharedStack(app, SHARED_STACK, config)
    constructs: dict[str, Workflow] = {}
    for workflow in workflows:
        stack = Stack(
            app,
            workflow_stack_name(workflow.name),
            description=f"Workflow {workflow.name}: {workflow.description}".rstrip(": "),
        )
        constructs[workflow.name] = Workflow(
            stack,
            "Workflow",
            WorkflowProps(
                workflow=workflow,
                event_bus=shared.status_events.event_bus,
                secret=shared.secret,
                layer=shared.layer,
                store=config.store,
                reconcile_schedule=config.reconcile_schedule,
            ),
        )
    return WorkflowApp(shared=shared, workflows=MappingProxyType(constructs))


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
        # The loader (YAML, JSON Schema) is build-time only: imported here, never by constructs.
        from runtime.definition.loader import load_workflows

        workflows = load_workflows([config.workflows_dir])
    except (SpecError, ConfigError) as error:
        print(error, file=sys.stderr)
        sys.exit(1)
    build(app, config, workflows)
    add_checks(app)
    app.synth()


def add_checks(app: App) -> None:
    """cdk-nag's AWS Solutions pack as a policy validation plugin: any finding not acknowledged
    (with a reason, next to the construct it concerns) fails the synthesis, so `cdk synth`,
    `make synth` and `make lint` fail too."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
