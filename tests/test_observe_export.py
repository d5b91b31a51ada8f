"""Where the functions export the runs' spans (docs/observability.md, "Exporting traces"): the
spec's ``tracing``, else the context's default. ``none`` leaves the functions on the plain layer;
``otlp`` gives every function the traced layer (OpenTelemetry's SDK and exporter besides) and the
endpoint; ``xray`` also the AWS Distro for OpenTelemetry collector layer, active tracing and
X-Ray's write actions. Every choice synthesizes with no unacknowledged cdk-nag finding."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from aws_cdk import App, DockerImage, Stack
from cdk_nag import AwsSolutionsChecks

from cdk_app.config import AppConfig, ConfigError
from constructs.bundling import PipLayerBundling
from constructs.lambda_runtime import PYTHON_RUNTIME, python_version
from constructs.tracing import COLLECTOR_ENDPOINT
from runtime.definition.loader import load_workflow, workflow_from_document
from runtime.definition.model import Tracing, Workflow
from runtime.errors import SpecError
from tests.cdk_fixtures import logical_id, resources_of_type, staged_code, synthesize, templates_of

SPEC = "tests/specs/observe/traced.yaml"
ENDPOINT = "https://collector.example.com:4318"
OTLP = Tracing(exporter="otlp", endpoint=ENDPOINT)


def _workflow(tracing: Tracing | None = None) -> Workflow:
    return replace(load_workflow(SPEC), tracing=tracing)


def _functions(app: App, workflow: str = "traced") -> dict[str, dict[str, Any]]:
    """Every function of the workflow's stack and its nested stacks, by logical id."""
    stack = next(
        child
        for child in app.node.children
        if isinstance(child, Stack) and child.stack_name.endswith(workflow)
    )
    found: dict[str, dict[str, Any]] = {}
    for template in templates_of(stack).values():
        for key, function in resources_of_type(template, "AWS::Lambda::Function").items():
            found[key] = function["Properties"]
    return found


def _policies(app: App) -> list[dict[str, Any]]:
    stack = next(
        child
        for child in app.node.children
        if isinstance(child, Stack) and child.stack_name.endswith("traced")
    )
    return [
        policy["Properties"]["PolicyDocument"]
        for template in templates_of(stack).values()
        for policy in resources_of_type(template, "AWS::IAM::Policy").values()
    ]


def _nag_findings(app: App) -> list[str]:
    report = AwsSolutionsChecks().validate_scope(app)
    return [
        f"{violation.rule_name} at {resource.construct_path}"
        for violation in report.violations
        for resource in violation.violating_resources
    ]


def test_none_is_the_default_the_functions_keep_the_plain_layer_and_no_variables() -> None:
    app, built = synthesize([_workflow()])

    assert built.shared.traced_layer is None
    assert built.workflows["traced"].tracing == Tracing()
    functions = _functions(app)
    assert len(functions) == 8  # orchestrator, notifier, starter, reconciler and the four jobs
    for properties in functions.values():
        variables = properties["Environment"]["Variables"]
        assert not [name for name in variables if name.startswith("OTEL_")]
        assert "TracingConfig" not in properties
        assert len(properties["Layers"]) == 1


def test_otlp_gives_every_function_the_traced_layer_and_the_endpoint() -> None:
    app, built = synthesize([_workflow(OTLP)])

    traced = built.shared.traced_layer
    assert traced is not None
    requirements = (staged_code(traced) / "requirements.txt").read_text()
    # The plain layer's pins, and OpenTelemetry's SDK and OTLP/HTTP exporter, pinned.
    assert "pymongo==" in requirements
    assert "opentelemetry-sdk==1.45.2" in requirements
    assert "opentelemetry-exporter-otlp-proto-http==1.45.2" in requirements
    plain = (staged_code(built.shared.layer) / "requirements.txt").read_text()
    assert "opentelemetry" not in plain
    traced_id, plain_id = logical_id(traced), logical_id(built.shared.layer)
    for properties in _functions(app).values():
        variables = properties["Environment"]["Variables"]
        assert variables["OTEL_EXPORTER_OTLP_ENDPOINT"] == ENDPOINT
        assert variables["OTEL_SERVICE_NAME"] == "traced"
        assert "TracingConfig" not in properties
        (layer,) = properties["Layers"]
        assert traced_id in json.dumps(layer)
        assert plain_id not in json.dumps(layer)
    assert _nag_findings(app) == []


def test_xray_adds_the_collector_layer_active_tracing_and_the_xray_writes() -> None:
    app, _ = synthesize([_workflow()], AppConfig.from_mapping({"tracing": "xray"}))

    functions = _functions(app)
    for properties in functions.values():
        assert properties["Environment"]["Variables"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == COLLECTOR_ENDPOINT
        assert properties["TracingConfig"] == {"Mode": "Active"}
        layers = sorted(json.dumps(layer) for layer in properties["Layers"])
        assert len(layers) == 2
        assert ":901920570463:layer:aws-otel-collector-amd64-ver-0-115-0:" in layers[1]
        assert "TracedDependencies" in layers[0]
    writes = [
        statement
        for document in _policies(app)
        for statement in document["Statement"]
        if "xray:PutTraceSegments" in statement["Action"]
    ]
    # The four functions' own roles and the jobs' shared one.
    assert len(writes) >= 5
    assert all(
        set(statement["Action"]) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
        for statement in writes
    )
    assert _nag_findings(app) == []


def test_the_spec_chooses_over_the_context_default() -> None:
    config = AppConfig.from_mapping({"tracing": "otlp", "tracingEndpoint": ENDPOINT})
    app, built = synthesize([_workflow(Tracing(exporter="none"))], config)

    assert built.workflows["traced"].tracing == Tracing(exporter="none")
    assert built.shared.traced_layer is None
    for properties in _functions(app).values():
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in properties["Environment"]["Variables"]


def test_the_spec_reads_tracing() -> None:
    spec = load_workflow(SPEC)
    assert spec.tracing is None
    document = {
        "workflow": "w",
        "phases": {"p": {"jobs": {"a": {}}}},
        "tracing": {"exporter": "otlp", "endpoint": ENDPOINT},
    }
    assert workflow_from_document(document).tracing == OTLP


@pytest.mark.parametrize(
    ("tracing", "path", "message"),
    [
        ({"exporter": "otlp"}, "$.tracing", "exporter otlp needs endpoint"),
        (
            {"exporter": "xray", "endpoint": ENDPOINT},
            "$.tracing.endpoint",
            "endpoint only applies with exporter otlp",
        ),
        ({"exporter": "jaeger"}, "$.tracing.exporter", "jaeger"),
        ({"exporter": "otlp", "endpoint": "collector:4318"}, "$.tracing.endpoint", "http:// or https:// URL"),
    ],
    ids=["otlp-without-endpoint", "xray-with-endpoint", "unknown-exporter", "not-a-url"],
)
def test_a_tracing_problem_says_where_and_what(tracing: dict[str, Any], path: str, message: str) -> None:
    document = {"workflow": "w", "phases": {"p": {"jobs": {"a": {}}}}, "tracing": tracing}
    with pytest.raises(SpecError) as raised:
        workflow_from_document(document)
    assert [(problem.path, message in problem.message) for problem in raised.value.problems] == [(path, True)]


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"tracing": "jaeger"}, "tracing must be none, otlp, xray, not 'jaeger'"),
        ({"tracing": "otlp"}, "tracing=otlp needs tracingEndpoint"),
        ({"tracing": "xray", "tracingEndpoint": ENDPOINT}, "tracingEndpoint only applies with tracing=otlp"),
        ({"tracingEndpoint": ENDPOINT}, "tracingEndpoint only applies with tracing=otlp, not none"),
        ({"tracing": "otlp", "tracingEndpoint": "collector"}, "is not an http:// or https:// URL"),
    ],
)
def test_a_tracing_context_problem_says_which_key(context: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        AppConfig.from_mapping(context)


def test_the_context_sets_the_default() -> None:
    config = AppConfig.from_mapping({"tracing": "otlp", "tracingEndpoint": ENDPOINT})
    assert config.tracing == OTLP
    assert AppConfig.from_mapping({}).tracing == Tracing()


@pytest.mark.synth
def test_the_traced_layer_installs_the_sdk_and_exporter_for_lambda(tmp_path) -> None:
    """Real pip, for Lambda's Python and platform: the pins resolve together with the plain
    layer's, into one layer."""
    app, built = synthesize([_workflow(OTLP)])
    assert built.shared.traced_layer is not None
    requirements = staged_code(built.shared.traced_layer) / "requirements.txt"

    PipLayerBundling(requirements, python_version(PYTHON_RUNTIME)).try_bundle(
        str(tmp_path), image=DockerImage.from_registry("local-bundling-only")
    )

    installed = tmp_path / "python"
    assert (installed / "opentelemetry" / "sdk" / "trace" / "__init__.py").is_file()
    assert (installed / "opentelemetry" / "exporter" / "otlp" / "proto" / "http" / "trace_exporter").is_dir()
    assert (installed / "pymongo").is_dir()
