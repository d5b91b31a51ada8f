"""Embedding a workflow in your own CDK app: your stack, ``Workflow(...)`` from a spec, the layer
and the MongoDB secret made for it, and a grant to one job's role.

From the repository root (``constructs/`` and ``runtime/`` must be importable, as they are for
the repository's own app)::

    PYTHONPATH=. npx cdk synth --app "python3 examples/embedded_app/app.py"
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Acknowledgment, App, Stack, Validations
from aws_cdk import aws_events as events
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

from constructs import Construct
from constructs.api import (
    DependencyLayer,
    DependencyLayerProps,
    Workflow,
    WorkflowProps,
    connection_secret,
    load_workflow,
)

SPEC = Path(__file__).resolve().parent / "fishing_trip.yaml"

CATCH_LOG_BUCKET = "fishing-trip-catch-log-example"
"""An existing bucket of yours; only the ``catch_fish`` job may read it."""


class FishingStack(Stack):
    """One stack holding everything: no shared stack, so no cross-stack references to keep fresh."""

    def __init__(self, scope: Construct, construct_id: str, spec: Path = SPEC) -> None:
        super().__init__(scope, construct_id, description="Fishing trips, as a workflow")
        # The layer with what the handlers need (pymongo), built by local pip: no Docker.
        layer = DependencyLayer(self, "Dependencies", DependencyLayerProps()).layer
        # A new secret with a placeholder; or connection_secret(..., secret_name="my/mongodb").
        secret = connection_secret(self, "MongoDbSecret")
        # Status events on the default bus; StatusEvents (constructs.trigger) adds an Atlas trigger.
        bus = events.EventBus.from_event_bus_name(self, "StatusBus", "default")
        self.workflow = Workflow(
            self,
            "FishingTrip",
            WorkflowProps(workflow=load_workflow(spec), event_bus=bus, secret=secret, layer=layer),
        )
        catch_log = s3.Bucket.from_bucket_name(self, "CatchLog", CATCH_LOG_BUCKET)
        reader = self.workflow.job_role("catch_fish")
        catch_log.grant_read(reader)
        self.workflow.job_function("catch_fish").add_environment("CATCH_LOG_BUCKET", catch_log.bucket_name)
        # cdk-nag flags the wildcards CDK's read grant uses; say why they are fine, next to it.
        Validations.of(reader).acknowledge(
            *(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[{finding}]",
                    reason="catch_fish reads the objects of the one catch-log bucket (CDK's grant_read).",
                )
                for finding in (
                    "Action::s3:GetBucket*",
                    "Action::s3:GetObject*",
                    "Action::s3:List*",
                    f"Resource::arn:<AWS::Partition>:s3:::{CATCH_LOG_BUCKET}/*",
                )
            )
        )


def main() -> None:
    app = App()
    FishingStack(app, "Fishing")
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()


if __name__ == "__main__":
    main()
