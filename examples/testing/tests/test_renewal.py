"""The renewal workflow, tested with the kit: a day's wait, a two-day approval timeout and three
retries an hour apart, each in milliseconds of virtual time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from cdk_app.testkit import Faults, WorkflowTest, raises, returns, sequence

SPEC = Path(__file__).resolve().parents[1] / "workflows" / "renewal.yaml"
ORDER = {"customer": "ana@example.com", "amount": 120.0}

OpenTest = Callable[..., WorkflowTest]


def test_the_reminder_goes_out_a_day_after_the_quote(workflow_test: OpenTest) -> None:
    renewal = workflow_test(SPEC)
    renewal.start(ORDER)
    renewal.assert_run(
        "running", jobs={"quote": "succeeded", "wait_a_day": "waiting", "send_reminder": "pending"}
    )

    renewal.advance(hours=23, minutes=59)
    renewal.assert_run("running", jobs={"wait_a_day": "waiting", "send_reminder": "pending"})

    renewal.advance(minutes=1)
    renewal.assert_run("running", jobs={"send_reminder": "succeeded", "discount": "waiting"})
    assert renewal.get().job("send_reminder").output == {
        "to": "ana@example.com",
        "text": "Your renewal of 120.00 is due tomorrow.",
    }


def test_an_approved_discount_is_taken_off_the_charge(workflow_test: OpenTest) -> None:
    renewal = workflow_test(SPEC)
    renewal.start(ORDER)
    renewal.run_until_idle()  # a day passes; then the run waits for the manager
    renewal.assert_run("running", jobs={"discount": "waiting"})

    renewal.approve("discount", {"percent": 10})

    renewal.assert_run("succeeded", jobs={"discount": "succeeded", "charge": "succeeded"})
    assert renewal.get().job("charge").output == {"charged": 108.0}


def test_a_discount_nobody_answers_times_out_after_two_days_and_the_full_price_is_charged(
    workflow_test: OpenTest,
) -> None:
    renewal = workflow_test(SPEC)
    renewal.start(ORDER)
    started = renewal.now

    renewal.run_until_idle(let_approvals_time_out=True)

    renewal.assert_run("succeeded", jobs={"discount": "failed", "charge": "succeeded"})
    run = renewal.get()
    assert run.job("discount").error == "approval timed out"
    assert run.job("charge").output == {"charged": 120.0}
    assert renewal.now - started == timedelta(days=3), "a day's wait, then two days for an answer"


def test_the_charge_is_retried_three_times_with_an_hours_backoff(workflow_test: OpenTest) -> None:
    down = raises(ConnectionError("the payment API is down"))
    renewal = workflow_test(SPEC, fakes={"charge": sequence(down, down, down, returns({"charged": 120.0}))})
    renewal.start(ORDER)
    renewal.run_until_idle()
    renewal.approve("discount")
    answered = renewal.now

    renewal.run_until_idle()

    renewal.assert_run("succeeded", jobs={"charge": "succeeded"})
    assert renewal.get().job("charge").attempts == 4
    assert renewal.executions("charge") == 4
    assert renewal.now - answered == timedelta(hours=1 + 2 + 4), "delay 1 h, backoff 2"


def test_a_fourth_payment_failure_fails_the_run(workflow_test: OpenTest) -> None:
    renewal = workflow_test(SPEC, fakes={"charge": raises(ConnectionError("the payment API is down"))})
    renewal.start(ORDER)
    renewal.run_until_idle()
    renewal.reject("discount", "no discounts this quarter")

    renewal.run_until_idle()

    renewal.assert_run("failed", jobs={"discount": "failed", "charge": "failed"})
    assert renewal.executions("charge") == 4
    assert "ConnectionError: the payment API is down" in (renewal.get().job("charge").error or "")


def test_duplicated_reordered_and_crashed_deliveries_charge_once(workflow_test: OpenTest) -> None:
    renewal = workflow_test(SPEC, faults=Faults(duplicate=2, reorder=True, crash=0.2, seed=7))
    renewal.start(ORDER)
    renewal.run_until_idle()
    renewal.approve("discount", {"percent": 10})

    renewal.assert_run("succeeded")
    assert renewal.executions("charge") == 1
    assert renewal.get().job("charge").output == {"charged": 108.0}
