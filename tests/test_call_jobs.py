"""Jobs that call an AWS service without code (``call``): each supported call against a client
stubbed with botocore's Stubber, through the real job wrapper and orchestrator on a real MongoDB
server; the spec's checks; the synthesized grant of exactly that action on that resource; and a
local run on a stand-in."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import boto3
import pymongo
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from cdk_app.graph import render_mermaid
from runtime.definition.loader import workflow_from_document
from runtime.definition.model import RetryPolicy, ServiceCall, Workflow
from runtime.errors import SpecError
from runtime.service.call_job import call_handler
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.cdk_fixtures import synthesize
from tests.cli_harness import cli
from tests.engine_harness import Driver, workflow
from tests.test_constructs_permissions import role_statements

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:order-events"
BUS = "arn:aws:events:eu-west-1:123456789012:event-bus/orders"
FUNCTION = "arn:aws:lambda:eu-west-1:123456789012:function:reserve-stock"
MACHINE = "arn:aws:states:eu-west-1:123456789012:stateMachine:fulfil"
ORDER = {"order_id": "o-1", "total": 20}


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def _run(
    store: MongoStore, call: ServiceCall, client: Any, retry: RetryPolicy | None = None
) -> dict[str, Any]:
    spec = workflow("calls", {"p": {"call": {"retry": retry or RetryPolicy(max=0)}}})
    handler = call_handler(lambda service: client, call)
    return Driver(store, spec, handlers={"call": handler}).run(run_input=ORDER).run


def _stubbed(service: str) -> tuple[Any, Stubber]:
    client = boto3.client(service, region_name="eu-west-1")
    return client, Stubber(client)


CASES: list[tuple[ServiceCall, str, str, dict[str, Any], dict[str, Any], Any]] = [
    (
        ServiceCall(
            service="sqs", action="send_message", resource=QUEUE, params="{MessageBody: to_string(input)}"
        ),
        "sqs",
        "send_message",
        {"QueueUrl": QUEUE, "MessageBody": json.dumps(ORDER, separators=(",", ":"))},
        {"MessageId": "m-1", "MD5OfMessageBody": "x"},
        {"MessageId": "m-1", "MD5OfMessageBody": "x"},
    ),
    (
        ServiceCall(service="sns", action="publish", resource=TOPIC, params="{Message: input.order_id}"),
        "sns",
        "publish",
        {"TopicArn": TOPIC, "Message": "o-1"},
        {"MessageId": "n-1"},
        {"MessageId": "n-1"},
    ),
    (
        ServiceCall(
            service="events",
            action="put_events",
            resource=BUS,
            params="{Entries: [{Source: 'orders', DetailType: 'placed', Detail: to_string(input)}]}",
        ),
        "events",
        "put_events",
        {
            "Entries": [
                {
                    "Source": "orders",
                    "DetailType": "placed",
                    "Detail": json.dumps(ORDER, separators=(",", ":")),
                    "EventBusName": BUS,
                }
            ]
        },
        {"FailedEntryCount": 0, "Entries": [{"EventId": "e-1"}]},
        {"FailedEntryCount": 0, "Entries": [{"EventId": "e-1"}]},
    ),
    (
        ServiceCall(
            service="stepfunctions",
            action="start_execution",
            resource=MACHINE,
            params="{name: input.order_id}",
        ),
        "stepfunctions",
        "start_execution",
        {"stateMachineArn": MACHINE, "name": "o-1"},
        {"executionArn": MACHINE + ":o-1", "startDate": dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)},
        {"executionArn": MACHINE + ":o-1", "startDate": "2026-12-07 09:00:00+00:00"},
    ),
]


@pytest.mark.parametrize(
    ("call", "service", "method", "expected", "response", "output"),
    CASES,
    ids=lambda c: getattr(c, "service", None),
)
def test_each_call_sends_its_parameters_with_the_resource_and_its_response_is_the_output(
    store: MongoStore,
    call: ServiceCall,
    service: str,
    method: str,
    expected: dict[str, Any],
    response: dict[str, Any],
    output: Any,
) -> None:
    client, stubber = _stubbed(service)
    stubber.add_response(method, response, expected)

    with stubber:
        run = _run(store, call, client)
        stubber.assert_no_pending_responses()

    assert run["status"] == "succeeded", run["jobs"]["call"]["error"]
    assert run["jobs"]["call"]["output"] == output


def test_a_lambda_invoke_answers_its_parsed_payload_and_a_function_error_fails_by_its_type(
    store: MongoStore,
) -> None:
    client, stubber = _stubbed("lambda")
    call = ServiceCall(service="lambda", action="invoke", resource=FUNCTION, params="{Payload: input}")
    declined = json.dumps({"errorType": "OutOfStock", "errorMessage": "none left"}).encode()
    stubber.add_response(
        "invoke",
        {
            "StatusCode": 200,
            "FunctionError": "Unhandled",
            "Payload": StreamingBody(io.BytesIO(declined), len(declined)),
        },
        {"FunctionName": FUNCTION, "Payload": json.dumps(ORDER)},
    )
    reserved = b'{"reserved": 2}'
    stubber.add_response(
        "invoke",
        {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(reserved), len(reserved))},
        {"FunctionName": FUNCTION, "Payload": json.dumps(ORDER)},
    )

    with stubber:
        run = _run(store, call, client, RetryPolicy(max=1, on=("OutOfStock",)))

    assert run["status"] == "succeeded"
    assert run["jobs"]["call"]["attempt"] == 2
    assert run["jobs"]["call"]["output"] == {"StatusCode": 200, "Payload": {"reserved": 2}}


def test_an_aws_error_fails_the_attempt_named_by_its_code_for_the_retry_policy(store: MongoStore) -> None:
    client, stubber = _stubbed("sns")
    stubber.add_client_error(
        "publish", service_error_code="ThrottledException", service_message="Rate exceeded"
    )
    stubber.add_response("publish", {"MessageId": "n-2"})
    call = ServiceCall(service="sns", action="publish", resource=TOPIC, params="{Message: 'hi'}")

    with stubber:
        run = _run(store, call, client, RetryPolicy(max=1, on=("ThrottledException",)))

    assert (run["status"], run["jobs"]["call"]["attempt"]) == ("succeeded", 2)


def test_refused_event_entries_fail_the_attempt(store: MongoStore) -> None:
    client, stubber = _stubbed("events")
    stubber.add_response(
        "put_events",
        {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "x"}]},
    )
    call = ServiceCall(
        service="events",
        action="put_events",
        resource=BUS,
        params="{Entries: [{Source: 's', DetailType: 'd', Detail: '{}'}]}",
    )

    with stubber:
        run = _run(store, call, client)

    assert run["status"] == "failed"
    assert "FailedEntries: EventBridge refused 1 entries" in run["jobs"]["call"]["error"]


def _spec(call: Any, **job: Any) -> dict[str, Any]:
    return {"workflow": "calls", "phases": {"p": {"jobs": {"call": {"call": call, **job}}}}}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            _spec({"service": "s3", "action": "put_object", "resource": "arn:aws:s3:::b"}),
            "not a call a job can make",
        ),
        (
            _spec({"service": "sqs", "action": "send_message", "resource": "orders"}),
            "neither an SQS queue URL nor its ARN",
        ),
        (
            _spec({"service": "sns", "action": "publish", "resource": TOPIC, "params": "{"}),
            "invalid JMESPath",
        ),
        (_spec({"service": "sns", "action": "publish", "resource": TOPIC}, code="x.py"), "runs no 'code'"),
    ],
    ids=["unknown", "queue", "params", "with-code"],
)
def test_the_loader_says_what_is_wrong_with_a_call_job(document: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        workflow_from_document(document)


def test_a_call_job_keeps_its_call_in_the_run_snapshot() -> None:
    loaded = workflow_from_document(
        _spec({"service": "sns", "action": "publish", "resource": TOPIC, "params": "input"})
    )

    again = Workflow.from_document(loaded.to_document())

    assert again.job("call").call == ServiceCall(
        service="sns", action="publish", resource=TOPIC, params="input"
    )


def test_each_call_jobs_role_may_make_exactly_its_call_on_exactly_its_resource() -> None:
    jobs = {
        "queue": {"call": {"service": "sqs", "action": "send_message", "resource": QUEUE}},
        "topic": {"call": {"service": "sns", "action": "publish", "resource": TOPIC}},
        "bus": {"call": {"service": "events", "action": "put_events", "resource": BUS}},
        "machine": {"call": {"service": "stepfunctions", "action": "start_execution", "resource": MACHINE}},
        "plain": {},
    }
    spec = workflow_from_document({"workflow": "granted", "phases": {"p": {"jobs": jobs}}})
    _, built = synthesize([spec])

    expected = {
        "queue": ("sqs:SendMessage", "arn:aws:sqs:eu-west-1:123456789012:orders"),
        "topic": ("sns:Publish", TOPIC),
        "bus": ("events:PutEvents", BUS),
        "machine": ("states:StartExecution", MACHINE),
    }
    for job, (action, resource) in expected.items():
        statements = role_statements(built, job)
        assert {"Action": action, "Effect": "Allow", "Resource": resource} in statements, job
    assert not any(action in json.dumps(role_statements(built, "plain")) for action, _ in expected.values())


def test_locally_the_stand_in_answers_in_the_services_place(tmp_path: Path) -> None:
    (tmp_path / "fake_sns.py").write_text(
        "def handler(request, context):\n"
        "    assert request['service'] == 'sns' and request['action'] == 'publish'\n"
        "    return {'MessageId': 'local-1', 'sent': request['params']['Message']}\n"
    )
    spec = tmp_path / "notify.yaml"
    spec.write_text(
        "workflow: notify\nphases:\n  p:\n    jobs:\n      tell:\n"
        f"        call: {{service: sns, action: publish, resource: '{TOPIC}',\n"
        "               params: '{Message: input.order_id}'}\n"
        "        local: fake_sns.py\n"
    )

    result = cli("run", str(spec), "--input", json.dumps(ORDER), "--json")

    assert result.exit_code == 0, result.stderr
    assert result.report["jobs"]["tell"]["output"] == {"MessageId": "local-1", "sent": "o-1"}


def test_the_graph_says_what_each_job_without_code_calls() -> None:
    spec = workflow_from_document(
        {
            "workflow": "calls",
            "phases": {
                "p": {
                    "jobs": {
                        "pay": {"invoke": FUNCTION + ":live"},
                        "tell": {"call": {"service": "sns", "action": "publish", "resource": TOPIC}},
                        "look": {"http": {"url": "https://crm.example.com/x/{input.id}"}},
                    }
                }
            },
        }
    )

    mermaid = render_mermaid(spec)

    assert "invoke reserve-stock:live" in mermaid
    assert "sns publish order-events" in mermaid
    assert "GET crm.example.com" in mermaid
