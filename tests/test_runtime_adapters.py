"""The AWS adapters behind the runtime's ports, against botocore's Stubber (no AWS account)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from runtime.aws.dispatch import LambdaDispatcher
from runtime.aws.notify import SlackNotifier, SnsNotifier
from runtime.documents.events import JobEvent
from runtime.documents.run import StatusEvent
from runtime.errors import StoreError
from runtime.ports import DispatchError, InvocationRefused, NotifyError
from runtime.service.notifier import NotifierService, compose
from runtime.statuses import StatusName
from runtime.store.connection import read_connection_string

REGION = "us-east-1"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:111111111111:secret:mongodb-AbCdEf"
TOPIC_ARN = "arn:aws:sns:us-east-1:111111111111:catch_the_fish-notifications"


def _client(service: str) -> Any:
    return boto3.client(service, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")


JOB = JobEvent(
    run_id="r1", workflow="catch_the_fish", phase="thinking", job="rent_a_boat", attempt=2, input={}
)


def test_the_lambda_dispatcher_invokes_the_job_function_asynchronously_with_the_job_event() -> None:
    client = _client("lambda")
    with Stubber(client) as stub:
        stub.add_response(
            "invoke",
            {"StatusCode": 202},
            {
                "FunctionName": "catch_the_fish-job-rent_a_boat",
                "InvocationType": "Event",
                "Payload": json.dumps(JOB.to_payload()).encode(),
            },
        )
        LambdaDispatcher(client).dispatch(JOB)
        stub.assert_no_pending_responses()


def test_a_refused_invocation_is_a_dispatch_error_naming_the_function() -> None:
    client = _client("lambda")
    with Stubber(client) as stub:
        stub.add_client_error("invoke", "TooManyRequestsException", "Rate exceeded")
        with pytest.raises(
            DispatchError, match="could not invoke catch_the_fish-job-rent_a_boat: .*Rate exceeded"
        ):
            LambdaDispatcher(client).dispatch(JOB)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("ResourceNotFoundException", "catch_the_fish-job-rent_a_boat does not exist"),
        ("RequestEntityTooLargeException", "larger than Lambda accepts"),
        ("InvalidRequestContentException", "refused the event for catch_the_fish-job-rent_a_boat as invalid"),
    ],
)
def test_invocations_no_retry_can_get_past_are_told_apart(code: str, message: str) -> None:
    client = _client("lambda")
    with Stubber(client) as stub:
        stub.add_client_error("invoke", code, "refused")
        with pytest.raises(InvocationRefused, match=message):
            LambdaDispatcher(client).dispatch(JOB)


def test_the_sns_notifier_publishes_subject_and_message_to_the_topic() -> None:
    client = _client("sns")
    with Stubber(client) as stub:
        stub.add_response(
            "publish", {"MessageId": "m1"}, {"TopicArn": TOPIC_ARN, "Subject": "hello", "Message": "world"}
        )
        SnsNotifier(client, TOPIC_ARN).publish("hello", "world")
        stub.assert_no_pending_responses()


def test_the_sns_subject_is_cut_to_what_sns_accepts() -> None:
    client = _client("sns")
    with Stubber(client) as stub:
        stub.add_response(
            "publish", {"MessageId": "m1"}, {"TopicArn": TOPIC_ARN, "Subject": "s" * 100, "Message": "m"}
        )
        SnsNotifier(client, TOPIC_ARN).publish("s" * 150, "m")
        stub.assert_no_pending_responses()


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        length = int(self.headers["Content-Length"])
        _Webhook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base
        return None


@pytest.fixture
def webhook() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Webhook.received = []
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook"
    finally:
        server.shutdown()


def test_the_slack_notifier_reads_the_webhook_from_secrets_manager_once_and_posts(webhook: str) -> None:
    client = _client("secretsmanager")
    with Stubber(client) as stub:
        stub.add_response("get_secret_value", {"SecretString": webhook + "\n"}, {"SecretId": "slack"})
        notifier = SlackNotifier(client, "slack")
        notifier.publish("run failed", "job cook failed")
        notifier.publish("run succeeded", "all good")
        stub.assert_no_pending_responses()
    assert [m["text"] for m in _Webhook.received] == [
        "*run failed*\njob cook failed",
        "*run succeeded*\nall good",
    ]


def test_a_slack_secret_that_is_not_a_url_is_a_clear_error() -> None:
    client = _client("secretsmanager")
    with Stubber(client) as stub:
        stub.add_response("get_secret_value", {"SecretString": "hunter2"}, {"SecretId": "slack"})
        with pytest.raises(NotifyError, match="does not hold a URL"):
            SlackNotifier(client, "slack").publish("s", "m")


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("mongodb+srv://user:pw@cluster0.example.net/", id="plain"),
        pytest.param(json.dumps({"uri": "mongodb+srv://user:pw@cluster0.example.net/"}), id="json"),
    ],
)
def test_the_connection_string_comes_from_the_secret(secret: str) -> None:
    client = _client("secretsmanager")
    with Stubber(client) as stub:
        stub.add_response("get_secret_value", {"SecretString": secret}, {"SecretId": SECRET_ARN})
        uri = read_connection_string({"MONGODB_SECRET_ARN": SECRET_ARN}, client)
    assert uri == "mongodb+srv://user:pw@cluster0.example.net/"


def test_mongodb_uri_wins_over_the_secret_for_local_runs() -> None:
    assert read_connection_string(
        {"MONGODB_URI": "mongodb://localhost", "MONGODB_SECRET_ARN": SECRET_ARN}
    ) == ("mongodb://localhost")


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        pytest.param('{"url": "x"}', "JSON without a 'uri' string", id="json-without-uri"),
        pytest.param("changeme", "does not hold a mongodb:// connection string", id="placeholder"),
    ],
)
def test_a_bad_secret_is_a_store_error_that_never_shows_the_secret(secret: str, message: str) -> None:
    client = _client("secretsmanager")
    with Stubber(client) as stub:
        stub.add_response("get_secret_value", {"SecretString": secret}, {"SecretId": SECRET_ARN})
        with pytest.raises(StoreError, match=message) as raised:
            read_connection_string({"MONGODB_SECRET_ARN": SECRET_ARN}, client)
    assert secret not in str(raised.value)


def test_an_unreadable_secret_is_a_store_error_naming_it() -> None:
    client = _client("secretsmanager")
    with Stubber(client) as stub:
        stub.add_client_error("get_secret_value", "AccessDeniedException", "not allowed")
        with pytest.raises(StoreError, match=f"could not read the MongoDB secret {SECRET_ARN}"):
            read_connection_string({"MONGODB_SECRET_ARN": SECRET_ARN}, client)


def test_no_connection_configured_says_what_to_set() -> None:
    with pytest.raises(StoreError, match="set MONGODB_SECRET_ARN"):
        read_connection_string({})


# -- notifier messages ---------------------------------------------------------------------------


def _status(status: str, **fields: Any) -> StatusEvent:
    return StatusEvent(run_id="r9", workflow="catch_the_fish", status=StatusName(status), **fields)


@pytest.mark.parametrize(
    ("event", "max_attempts", "subject", "words"),
    [
        pytest.param(
            _status(
                "failed", phase="thinking", job="cook", attempt=1, error="KeyError: 'fish'\ntraceback..."
            ),
            3,
            "catch_the_fish: job cook failed",
            ["attempt 1 of 3", "will be retried", "Error: KeyError: 'fish'"],
            id="failed-will-retry",
        ),
        pytest.param(
            _status("failed", phase="thinking", job="cook", attempt=3, error="boom"),
            3,
            "catch_the_fish: job cook failed",
            ["attempt 3 of 3", "no attempts left"],
            id="failed-final",
        ),
        pytest.param(
            _status("phase_completed", phase="thinking"),
            None,
            "catch_the_fish: phase thinking completed",
            ["r9"],
            id="phase",
        ),
        pytest.param(
            _status("workflow_succeeded"), None, "catch_the_fish: run succeeded", ["r9 succeeded"], id="ok"
        ),
        pytest.param(
            _status("workflow_failed", error="job 'cook' failed after 3 attempt(s): boom"),
            None,
            "catch_the_fish: run failed",
            ["r9 failed", "job 'cook' failed after 3 attempt(s)"],
            id="run-failed",
        ),
    ],
)
def test_one_short_message_per_event_kind(
    event: StatusEvent, max_attempts: int | None, subject: str, words: list[str]
) -> None:
    got_subject, message = compose(event, max_attempts)
    assert got_subject == subject
    for word in words:
        assert word in message
    assert "traceback" not in message


class _Collect:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def publish(self, subject: str, message: str) -> None:
        self.sent.append((subject, message))


def test_the_notifier_service_publishes_to_every_notifier_and_drops_malformed_events() -> None:
    first, second = _Collect(), _Collect()
    service = NotifierService(notifiers=[first, second])
    event = {
        "detail": {
            "operationType": "insert",
            "fullDocument": {"runId": "r1", "workflow": "w", "status": "workflow_succeeded", "job": None},
        }
    }
    assert service.handle(event) == ("w: run succeeded", "w run r1 succeeded.")
    assert first.sent == second.sent == [("w: run succeeded", "w run r1 succeeded.")]
    assert service.handle({"detail": "nope"}) is None
    assert len(first.sent) == 1
