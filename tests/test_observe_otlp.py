"""Configured for OTLP as the constructs configure a function (``tracing: otlp``: the traced
layer's SDK and exporter, OpenTelemetry's endpoint variable), a process sets up the tracer
provider at its cold start and exports the run's spans over OTLP/HTTP: the orchestrator's run
and phase spans and the job wrapper's attempt spans, here to a receiver the test runs. The run
goes through the test kit (the real orchestrator, job wrapper and store) in a fresh interpreter,
as a Lambda cold start is one."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from runtime.documents import traces

ROOT = Path(__file__).resolve().parents[1]
SPEC = "tests/specs/observe/traced.yaml"

RUN = """
import os, sys
from runtime.aws import tracing
from runtime.aws.telemetry import setup_function

setup_function(os.environ)  # what every handler does at its cold start

from cdk_app.testkit import WorkflowTest, raises, sequence

test = WorkflowTest(
    sys.argv[1],
    sys.argv[2],
    fakes={
        "flaky": sequence(raises(ConnectionError("down")), {"n": 2}),
        "fan": "ok",
        "broken": raises(ValueError("bad data")),
        "cleanup": {"cleaned": True},
    },
)
try:
    run_id = test.start({"items": ["a", "b"]}).run_id
    test.run_until_idle()
finally:
    test.close()
tracing.flush()  # what every handler does at the end of an invocation
print(run_id)
"""


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP receiver: keeps the spans of every ``POST /v1/traces``."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[Span] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        with self.server.lock:
            self.server.paths.append(self.path)
            self.server.spans += [
                span
                for resource in request.resource_spans
                for scope in resource.scope_spans
                for span in scope.spans
            ]
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's signature
        return


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _run(receiver: Receiver, mongo_uri: str) -> str:
    """The run's id, run in a fresh interpreter with the variables a traced function has."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{receiver.server_address[1]}"
    environment["OTEL_SERVICE_NAME"] = "traced"
    done = subprocess.run(
        [sys.executable, "-c", RUN, SPEC, mongo_uri],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def _attributes(span: Span) -> dict[str, Any]:
    return {
        attribute.key: getattr(attribute.value, attribute.value.WhichOneof("value"))
        for attribute in span.attributes
    }


def test_a_process_configured_for_otlp_exports_the_runs_spans_to_the_endpoint(
    receiver: Receiver, mongo_uri: str
) -> None:
    run_id = _run(receiver, mongo_uri)

    assert receiver.spans, "no span reached the receiver"
    assert set(receiver.paths) == {"/v1/traces"}
    assert {span.trace_id.hex() for span in receiver.spans} == {traces.trace_id(run_id)}
    by_name: dict[str, list[Span]] = {}
    for span in receiver.spans:
        by_name.setdefault(span.name, []).append(span)
    # The orchestrator's spans (written when the run ended) and the job wrapper's, one per attempt.
    assert sorted(by_name) == sorted(
        [
            "run traced",
            "phase prepare",
            "phase finish",
            "phase on_failure",
            "flaky",
            "fan[0]",
            "fan[1]",
            "broken",
            "cleanup",
        ]
    )
    (root,) = by_name["run traced"]
    assert (root.span_id.hex(), root.parent_span_id) == (traces.run_span_id(run_id), b"")
    assert _attributes(root)["workflow.outcome"] == "failed"
    for phase in ("prepare", "finish", "on_failure"):
        (span,) = by_name[f"phase {phase}"]
        assert span.parent_span_id.hex() == traces.run_span_id(run_id)
    flaky = sorted(by_name["flaky"], key=lambda span: _attributes(span)["workflow.attempt"])
    assert [_attributes(span)["workflow.outcome"] for span in flaky] == ["failed", "success"]
    assert [span.span_id.hex() for span in flaky] == [
        traces.attempt_span_id(run_id, "flaky", n) for n in (1, 2)
    ]
    assert {span.parent_span_id.hex() for span in flaky} == {traces.phase_span_id(run_id, "prepare")}
    (broken,) = by_name["broken"]
    assert broken.status.code == broken.status.STATUS_CODE_ERROR
    assert broken.parent_span_id.hex() == traces.phase_span_id(run_id, "finish")
