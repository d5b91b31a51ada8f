"""The example of jobs that call what a team already has (examples/order_services): an order
workflow whose payment is an existing Node.js function by ARN and whose notification is an SNS
publish. It validates without a warning, synthesizes with exactly those grants, and runs on this
machine on its stand-ins, a declined card retried as the spec says."""

from __future__ import annotations

import json
from pathlib import Path

from cdk_app.testkit import WorkflowTest
from runtime.definition.loader import check_specs, load_workflow
from tests.cdk_fixtures import synthesize
from tests.cli_harness import cli
from tests.test_constructs_permissions import role_statements

SPEC = Path(__file__).resolve().parents[1] / "examples" / "order_services" / "orders.yaml"
BILLING = "arn:aws:lambda:eu-west-1:123456789012:function:billing-charge:live"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:order-events"


def test_it_validates_without_a_problem_or_a_warning() -> None:
    check = check_specs([SPEC])

    assert (len(check.workflows), check.problems, check.warnings) == (1, (), ())


def test_its_jobs_may_call_exactly_the_function_and_the_topic() -> None:
    _, built = synthesize([load_workflow(SPEC)])

    def allowed(job: str, action: str) -> list[object]:
        return [
            statement["Resource"]
            for statement in role_statements(built, job, "order_services")
            if statement["Action"] == action
        ]

    assert allowed("tell_customer", "sns:Publish") == [TOPIC]
    assert BILLING in json.dumps(allowed("charge", "lambda:InvokeFunction"))
    assert "sns:Publish" not in json.dumps(role_statements(built, "charge", "order_services"))
    assert BILLING not in json.dumps(role_statements(built, "tell_customer", "order_services"))


def test_it_runs_on_this_machine_on_its_stand_ins() -> None:
    order = {"order_id": "o-7", "customer": "c-1234", "total": 42.5}

    result = cli("run", str(SPEC), "--input", json.dumps(order), "--json")

    assert result.exit_code == 0, result.stderr
    outputs = {name: job["output"] for name, job in result.report["jobs"].items()}
    assert outputs == {
        "check_order": {"checked": "o-7"},
        "charge": {"receipt": "r-o-7", "charged": 42.5},
        "tell_customer": {"MessageId": "local-order-paid"},
    }


def test_a_declined_card_is_retried_as_the_spec_says_then_fails_the_run(mongo_uri: str) -> None:
    # Through the test kit, which skips the retries' 5, 10 and 20 seconds.
    orders = WorkflowTest(SPEC, mongo_uri)
    try:
        orders.start({"order_id": "o-8", "customer": "c-0000", "total": 42.5})
        begun = orders.now
        orders.run_until_idle()

        orders.assert_run("failed", jobs={"charge": "failed", "tell_customer": "pending"})
        charge = orders.get().job("charge")
        assert charge.attempts == 4
        assert "CardDeclined: card of c-0000 declined" in (charge.error or "")
        assert (orders.now - begun).total_seconds() == 5 + 10 + 20
    finally:
        orders.close()
