"""Jobs that send an HTTP request (``http``): against a real HTTP server on this machine, through
the real job wrapper and orchestrator on a real MongoDB server; the status policy the retry
policy sees by type; the spec's checks; the synthesized grant of exactly the secret; and a
local run through the CLI."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pymongo
import pytest
from aws_cdk.assertions import Template

from cdk_app.local.stand_ins import local_secret, secret_variable
from runtime.aws.http import UrllibClient
from runtime.definition.loader import workflow_from_document
from runtime.definition.model import HttpRequest, RetryPolicy, Workflow
from runtime.errors import SpecError
from runtime.service.http_job import http_handler
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.cdk_fixtures import synthesize
from tests.cli_harness import cli
from tests.engine_harness import Driver, workflow
from tests.test_constructs_permissions import role_statements

TOKEN = "Bearer s3cret"


class _Api(BaseHTTPRequestHandler):
    calls: Counter[str] = Counter()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _answer(self, status: int, document: Any, content_type: str = "application/json") -> None:
        body = json.dumps(document).encode() if content_type == "application/json" else str(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        _Api.calls[self.path] += 1
        if self.path.startswith("/customers/"):
            self._answer(200, {"id": self.path.rsplit("/", 1)[-1], "plan": "gold"})
        elif self.path == "/flaky":
            self._answer(429 if _Api.calls[self.path] == 1 else 200, {"try": _Api.calls[self.path]})
        elif self.path == "/down":
            self._answer(503, {"error": "maintenance"})
        elif self.path == "/missing":
            self._answer(404, {"error": "no such thing"})
        elif self.path == "/slow":
            time.sleep(2)
            self._answer(200, {})
        elif self.path == "/private":
            allowed = self.headers.get("Authorization") == TOKEN
            self._answer(200 if allowed else 401, {"allowed": allowed})
        elif self.path == "/text":
            self._answer(200, "plain words", "text/plain")

    def do_POST(self) -> None:
        _Api.calls[self.path] += 1
        length = int(self.headers.get("Content-Length", "0"))
        self._answer(
            201, {"got": json.loads(self.rfile.read(length)), "type": self.headers.get("Content-Type")}
        )


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    _Api.calls.clear()
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def _run(
    store: MongoStore, request: HttpRequest, retry: RetryPolicy, run_input: Any = None
) -> dict[str, Any]:
    spec = workflow("calls", {"p": {"call": {"retry": retry}, "after": {"after": ["call"]}}})
    handler = http_handler(UrllibClient(), request, lambda name: TOKEN)
    return Driver(store, spec, handlers={"call": handler}).run(run_input=run_input).run


def test_a_2xx_answers_json_is_the_output_and_the_url_takes_values_from_the_input(
    store: MongoStore, api: str
) -> None:
    run = _run(
        store, HttpRequest(url=api + "/customers/{input.customer}"), RetryPolicy(max=0), {"customer": "a b"}
    )

    assert run["status"] == "succeeded"
    assert run["jobs"]["call"]["output"] == {"id": "a%20b", "plan": "gold"}


def test_a_body_is_sent_as_json_and_a_text_answer_is_its_text(store: MongoStore, api: str) -> None:
    posted = _run(
        store, HttpRequest(url=api + "/orders", method="POST", body="input"), RetryPolicy(max=0), [1, 2]
    )
    text = _run(store, HttpRequest(url=api + "/text"), RetryPolicy(max=0))

    assert posted["jobs"]["call"]["output"] == {"got": [1, 2], "type": "application/json"}
    assert text["jobs"]["call"]["output"] == "plain words"


def test_a_429_is_an_error_the_retry_policy_retries_by_type(store: MongoStore, api: str) -> None:
    run = _run(store, HttpRequest(url=api + "/flaky"), RetryPolicy(max=2, on=("HttpTooManyRequests",)))

    assert run["status"] == "succeeded"
    assert (run["jobs"]["call"]["attempt"], run["jobs"]["call"]["output"]) == (2, {"try": 2})


def test_a_5xx_is_retried_until_the_policy_gives_up(store: MongoStore, api: str) -> None:
    run = _run(store, HttpRequest(url=api + "/down"), RetryPolicy(max=2, on=("HttpServerError",)))

    assert run["status"] == "failed"
    assert run["jobs"]["call"]["attempt"] == 3
    assert "HttpServerError: GET " in run["jobs"]["call"]["error"]
    assert "answered 503" in run["jobs"]["call"]["error"]
    assert _Api.calls["/down"] == 3


def test_another_4xx_is_a_client_error_a_429_and_5xx_policy_does_not_retry(
    store: MongoStore, api: str
) -> None:
    run = _run(
        store,
        HttpRequest(url=api + "/missing"),
        RetryPolicy(max=2, on=("HttpTooManyRequests", "HttpServerError")),
    )

    assert (run["status"], run["jobs"]["call"]["attempt"]) == ("failed", 1)
    assert "HttpClientError" in run["jobs"]["call"]["error"]


def test_no_answer_in_time_is_a_timeout(store: MongoStore, api: str) -> None:
    run = _run(store, HttpRequest(url=api + "/slow", timeout=0.3), RetryPolicy(max=0))

    assert "HttpTimeout" in run["jobs"]["call"]["error"]


def test_the_secret_goes_in_its_header(store: MongoStore, api: str) -> None:
    run = _run(store, HttpRequest(url=api + "/private", secret="partner/api-key"), RetryPolicy(max=0))

    assert run["jobs"]["call"]["output"] == {"allowed": True}


def test_locally_a_secret_comes_from_its_variable_and_its_absence_is_said(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:partner/api-key-AbC123"
    assert secret_variable("partner/api-key") == secret_variable(arn) == "WORKFLOWS_SECRET_PARTNER_API_KEY"
    monkeypatch.delenv("WORKFLOWS_SECRET_PARTNER_API_KEY", raising=False)
    with pytest.raises(Exception, match="set WORKFLOWS_SECRET_PARTNER_API_KEY") as missing:
        local_secret("partner/api-key")
    assert type(missing.value).__name__ == "NoLocalSecret"
    monkeypatch.setenv("WORKFLOWS_SECRET_PARTNER_API_KEY", TOKEN)
    assert local_secret(arn) == TOKEN


def _spec(http: Any, **job: Any) -> dict[str, Any]:
    return {"workflow": "calls", "phases": {"p": {"jobs": {"call": {"http": http, **job}}}}}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (_spec({"url": "ftp://x"}), "the url is an http:// or https:// address"),
        (_spec({"url": "https://x/{input.[}"}), "invalid JMESPath"),
        (_spec({"url": "https://x", "method": "FETCH"}), "FETCH"),
        (_spec({"url": "https://x"}, code="jobs/x.py"), "runs no 'code'"),
        (_spec({"url": "https://x"}, invoke="fn"), "runs no 'invoke'"),
    ],
    ids=["scheme", "url-expression", "method", "with-code", "with-invoke"],
)
def test_the_loader_says_what_is_wrong_with_an_http_job(document: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        workflow_from_document(document)


def test_an_http_job_keeps_its_request_in_the_run_snapshot() -> None:
    loaded = workflow_from_document(_spec({"url": "https://x/{input.id}", "body": "input", "secret": "k"}))

    again = Workflow.from_document(loaded.to_document())

    assert again.job("call").http == HttpRequest(
        url="https://x/{input.id}", method="POST", body="input", secret="k"
    )


def test_the_job_role_may_read_exactly_its_secret_and_the_function_knows_the_request() -> None:
    spec = workflow_from_document(
        {
            "workflow": "granted",
            "phases": {
                "p": {
                    "jobs": {
                        "call": {"http": {"url": "https://partner.example/x", "secret": "partner-key"}},
                        "other": {},
                    }
                }
            },
        }
    )
    _, built = synthesize([spec])

    reads = [
        statement
        for statement in role_statements(built, "call")
        if statement["Action"] == "secretsmanager:GetSecretValue"
        and "partner-key" in json.dumps(statement["Resource"])
    ]
    assert len(reads) == 1
    assert "partner-key-??????" in json.dumps(reads[0]["Resource"])
    assert "partner-key" not in json.dumps(role_statements(built, "other"))
    function = built.workflows["granted"].job_functions["call"]
    template = Template.from_stack(function.stack).to_json()
    environment = next(
        resource["Properties"]["Environment"]["Variables"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Lambda::Function"
        and resource["Properties"].get("FunctionName") == "granted-job-call"
    )
    assert environment["JOB_HANDLER"] == "runtime.handlers.http.handler"
    assert json.loads(environment["HTTP_REQUEST"])["url"] == "https://partner.example/x"


def test_locally_run_sends_the_request_for_real(api: str, tmp_path: Path) -> None:
    spec = tmp_path / "calls.yaml"
    spec.write_text(
        "workflow: calls\nphases:\n  p:\n    jobs:\n"
        f"      lookup: {{http: {{url: '{api}/customers/{{input.customer}}'}}}}\n"
    )

    result = cli("run", str(spec), "--input", '{"customer": "c-7"}', "--json")

    assert result.exit_code == 0, result.stderr
    assert result.report["jobs"]["lookup"]["output"] == {"id": "c-7", "plan": "gold"}
