"""Jobs that call an existing Lambda function (``invoke``): through the real job wrapper and
orchestrator on a real MongoDB server, against a Lambda client stubbed with botocore's Stubber;
the spec's checks; the synthesized grant of exactly that function; and the local stand-in."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import boto3
import pymongo
import pytest
from aws_cdk.assertions import Template
from botocore.response import StreamingBody
from botocore.stub import Stubber

from runtime.aws.invoke import LambdaInvoker
from runtime.definition.loader import workflow_from_document
from runtime.definition.model import RetryPolicy, Workflow
from runtime.errors import SpecError
from runtime.service.invoke_job import invoke_handler
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.cdk_fixtures import synthesize
from tests.cli_harness import cli
from tests.engine_harness import Driver, workflow
from tests.test_constructs_permissions import role_statements

BILLING = "arn:aws:lambda:eu-west-1:123456789012:function:billing-charge:live"
ORDER = {"order_id": "o-1", "amount": 20}


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def _orders(retry: RetryPolicy) -> Workflow:
    return workflow(
        "orders",
        {
            "pay": {
                "charge": {
                    "invoke": BILLING,
                    "payload": "{order: input.order_id, amount: input.amount}",
                    "retry": retry,
                },
                "ship": {"after": ["charge"]},
            }
        },
    )


class Billing:
    """The billing function behind a stubbed Lambda client: each expected call with its answer."""

    def __init__(self) -> None:
        self.client = boto3.client("lambda", region_name="eu-west-1")
        self.stubber = Stubber(self.client)

    def answers(self, answer: Any, function_error: str | None = None) -> None:
        body = json.dumps(answer).encode()
        response: dict[str, Any] = {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(body), len(body))}
        if function_error is not None:
            response["FunctionError"] = function_error
        expected = {
            "FunctionName": BILLING,
            "InvocationType": "RequestResponse",
            "Payload": json.dumps({"order": "o-1", "amount": 20}).encode(),
        }
        self.stubber.add_response("invoke", response, expected)

    def refuses(self, code: str) -> None:
        self.stubber.add_client_error("invoke", service_error_code=code, service_message="Rate exceeded")


def _run(store: MongoStore, spec: Workflow, billing: Billing) -> dict[str, Any]:
    handler = invoke_handler(LambdaInvoker(billing.client), BILLING, spec.job("charge").payload)
    with billing.stubber:
        outcome = Driver(store, spec, handlers={"charge": handler}).run(run_input=ORDER)
        billing.stubber.assert_no_pending_responses()
    return outcome.run


def test_the_functions_answer_is_the_jobs_output_and_reaches_the_jobs_after_it(store: MongoStore) -> None:
    billing = Billing()
    billing.answers({"charged": 20, "receipt": "r-9"})

    run = _run(store, _orders(RetryPolicy(max=0)), billing)

    assert run["status"] == "succeeded"
    assert run["jobs"]["charge"]["output"] == {"charged": 20, "receipt": "r-9"}


def test_a_function_error_is_the_attempts_error_named_by_its_type_and_retry_on_sees_it(
    store: MongoStore,
) -> None:
    billing = Billing()
    billing.answers({"errorType": "CardDeclined", "errorMessage": "insufficient funds"}, "Unhandled")
    billing.answers({"charged": 20})

    run = _run(store, _orders(RetryPolicy(max=2, on=("CardDeclined",))), billing)

    assert run["status"] == "succeeded"
    assert run["jobs"]["charge"]["attempt"] == 2


def test_an_error_type_the_policy_does_not_retry_fails_the_job_with_it(store: MongoStore) -> None:
    billing = Billing()
    billing.answers({"errorType": "FraudSuspected", "errorMessage": "card blocked"}, "Handled")

    run = _run(store, _orders(RetryPolicy(max=2, on=("CardDeclined",))), billing)

    assert run["status"] == "failed"
    assert run["jobs"]["charge"]["attempt"] == 1
    assert "FraudSuspected: card blocked" in run["jobs"]["charge"]["error"]


def test_a_throttled_call_is_an_error_named_by_lambdas_code_and_is_retried(store: MongoStore) -> None:
    billing = Billing()
    billing.refuses("TooManyRequestsException")
    billing.answers({"charged": 20})

    run = _run(store, _orders(RetryPolicy(max=1, on=("TooManyRequestsException",))), billing)

    assert run["status"] == "succeeded"
    assert run["jobs"]["charge"]["attempt"] == 2


def _spec(**charge: Any) -> dict[str, Any]:
    return {"workflow": "orders", "phases": {"pay": {"jobs": {"charge": charge}}}}


@pytest.mark.parametrize(
    ("charge", "message"),
    [
        ({"invoke": "arn:aws:lambda:eu-west-1:12:function:x"}, "is not a Lambda function ARN"),
        ({"invoke": BILLING, "code": "jobs/charge.py"}, "runs no 'code': remove 'code' or 'invoke'"),
        ({"invoke": BILLING, "wait": 60}, "runs no 'wait'"),
        ({"payload": "input"}, "'payload' goes with 'invoke'"),
        ({"invoke": BILLING, "payload": "input.["}, "invalid JMESPath"),
    ],
    ids=["bad-arn", "with-code", "with-wait", "payload-alone", "bad-payload"],
)
def test_the_loader_says_what_is_wrong_with_an_invoke_job(charge: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        workflow_from_document(_spec(**charge))


def test_an_invoke_job_keeps_its_function_and_payload_in_the_run_snapshot() -> None:
    loaded = workflow_from_document(_spec(invoke="billing-charge:7", payload="input"))

    again = Workflow.from_document(loaded.to_document())

    assert (again.job("charge").invoke, again.job("charge").payload) == ("billing-charge:7", "input")


def test_the_job_role_may_invoke_exactly_that_function_and_the_function_knows_what_to_call() -> None:
    spec = workflow_from_document(
        {
            "workflow": "granted",
            "phases": {"pay": {"jobs": {"charge": {"invoke": BILLING, "payload": "input"}, "ship": {}}}},
        }
    )
    _, built = synthesize([spec])

    invoked = [
        resource
        for statement in role_statements(built, "charge")
        if statement["Action"] == "lambda:InvokeFunction"
        for resource in (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        if isinstance(resource, str)
    ]
    # The one function, as written; the rest of the statement is the orchestrator (its
    # on-failure destination), which CDK merges into it.
    assert invoked == [BILLING]
    assert BILLING not in json.dumps(role_statements(built, "ship"))
    function = built.workflows["granted"].job_functions["charge"]
    template = Template.from_stack(function.stack).to_json()
    environment = next(
        resource["Properties"]["Environment"]["Variables"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Lambda::Function"
        and resource["Properties"].get("FunctionName") == "granted-job-charge"
    )
    assert environment["JOB_HANDLER"] == "runtime.handlers.invoke.handler"
    assert (environment["INVOKE_FUNCTION"], environment["INVOKE_PAYLOAD"]) == (BILLING, "input")


def test_locally_the_stand_in_answers_in_the_functions_place(tmp_path: Path) -> None:
    (tmp_path / "fake_billing.py").write_text(
        "class CardDeclined(Exception):\n    pass\n\n\n"
        "def handler(payload, context):\n"
        "    if payload['amount'] > 100:\n"
        "        raise CardDeclined('over the limit')\n"
        "    return {'charged': payload['amount']}\n"
    )
    spec = tmp_path / "orders.yaml"
    spec.write_text(
        "workflow: orders\nphases:\n  pay:\n    jobs:\n      charge:\n"
        f"        invoke: {BILLING}\n"
        "        payload: '{order: input.order_id, amount: input.amount}'\n"
        "        local: fake_billing.py\n"
        "        retry: {max: 1, on: [CardDeclined]}\n"
    )

    paid = cli("run", str(spec), "--input", json.dumps(ORDER), "--json")
    declined = cli("run", str(spec), "--input", json.dumps({"order_id": "o-2", "amount": 200}), "--json")

    assert paid.exit_code == 0, paid.stderr
    assert paid.report["jobs"]["charge"]["output"] == {"charged": 20}
    assert declined.exit_code == 1
    assert declined.jobs()["charge"] == ("failed", 2)
    assert "CardDeclined: over the limit" in declined.report["jobs"]["charge"]["error"]
