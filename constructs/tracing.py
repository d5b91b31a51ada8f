"""Where a workflow's functions export the runs' spans: the spec's ``tracing``, else the app's
default (CDK context ``tracing``, ``tracingEndpoint``), else nowhere.

- ``none``: the functions get the plain dependency layer, without OpenTelemetry; the spans are
  not written (``runtime.aws.tracing`` does nothing without its packages).
- ``otlp``: the traced dependency layer (the plain one's packages plus OpenTelemetry's SDK and
  OTLP/HTTP exporter, ``TRACING_REQUIREMENTS``) and OpenTelemetry's own variables: every
  function installs a tracer provider at its cold start and exports over OTLP/HTTP to the
  endpoint, flushed at the end of each invocation.
- ``xray``: the same, exporting to ``http://localhost:4318``, where the AWS Distro for
  OpenTelemetry collector (its Lambda layer, ``ADOT_COLLECTOR``, an extension) receives the
  spans and sends them to X-Ray with the function's role; the functions have active tracing,
  which gives that role X-Ray's two write actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_

from constructs import Construct
from constructs.lambda_runtime import ARCHITECTURE
from runtime.definition.model import Tracing

TRACING_REQUIREMENTS = Path(__file__).with_name("tracing_requirements.txt")
"""Installed with the plain layer's requirements into the traced layer (pinned)."""

ADOT_COLLECTOR = lambda_.AdotLambdaLayerGenericVersion.V0_115_0
"""The AWS Distro for OpenTelemetry collector layer (``aws-otel-collector-amd64-ver-0-115-0``,
its ARN per region from CDK's table). Its default configuration receives OTLP on localhost and
exports traces to X-Ray; from collector 0.84 on, X-Ray takes trace ids that do not start with a
timestamp, as the runs' derived ids do not."""

COLLECTOR_ENDPOINT = "http://localhost:4318"
"""Where the collector extension receives OTLP/HTTP, inside the function's own sandbox."""

OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
SERVICE_NAME = "OTEL_SERVICE_NAME"
"""OpenTelemetry's own variables, which ``runtime.aws.tracing.configure_from_env`` reads."""

XRAY_WRITE_ACKNOWLEDGMENT = Acknowledgment(
    id="AwsSolutions-IAM5[Resource::*]",
    reason="Active tracing's grant: xray:PutTraceSegments and xray:PutTelemetryRecords, which X-Ray "
    "only grants on every resource; the role gets no other wildcard.",
)


def exports(tracing: Tracing) -> bool:
    return tracing.exporter != "none"


@dataclass(frozen=True)
class FunctionTracing:
    """What every function of a workflow gets for its ``tracing``."""

    layers: tuple[lambda_.ILayerVersion, ...]
    """After the dependency layer: the collector's for ``xray``."""
    environment: dict[str, str]
    tracing: lambda_.Tracing | None
    """Active for ``xray``; else Lambda's default."""

    def acknowledge(self, role: iam.IRole) -> None:
        """The X-Ray write grant's wildcard, on a role of a function with active tracing."""
        if self.tracing == lambda_.Tracing.ACTIVE:
            Validations.of(role).acknowledge(XRAY_WRITE_ACKNOWLEDGMENT)


def function_tracing(scope: Construct, tracing: Tracing, workflow: str) -> FunctionTracing:
    """The layers, variables and tracing mode of ``workflow``'s functions, the collector layer
    imported into ``scope`` once."""
    if not exports(tracing):
        return FunctionTracing(layers=(), environment={}, tracing=None)
    environment = {SERVICE_NAME: workflow}
    if tracing.exporter == "otlp" and tracing.endpoint is not None:
        environment[OTLP_ENDPOINT] = tracing.endpoint
        return FunctionTracing(layers=(), environment=environment, tracing=None)
    collector = lambda_.LayerVersion.from_layer_version_arn(
        scope, "AdotCollector", ADOT_COLLECTOR.layer_arn(scope, ARCHITECTURE)
    )
    return FunctionTracing(
        layers=(collector,),
        environment=environment | {OTLP_ENDPOINT: COLLECTOR_ENDPOINT},
        tracing=lambda_.Tracing.ACTIVE,
    )
