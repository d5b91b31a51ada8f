"""A job's output is any JSON value, and the jobs after it, ``when`` and ``for_each`` read exactly
what the handler returned: keys MongoDB will not take as field names (``.``, a leading ``$``),
integers JavaScript does not hold exactly, nesting past what a run document holds, and values
that are not objects (docs/spec.md, ``code``)."""

from __future__ import annotations

from typing import Any

import pymongo
import pytest

from runtime import limits
from runtime.service.job_attempt import run_attempt
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import Driver, Faults, workflow


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


AWKWARD = {
    "alice@example.com": {"$amount": 2**60, "report.pdf": 2**70},
    "$set": {"owed": -(2**63) - 7},
    "ids": [2**53, -(2**53)],
    "deep": _nested(limits.OUTPUT_MAX_DEPTH + 20),
    "": "an empty key",
}


AMOUNT = 'results.make."alice@example.com"."$amount"'


class Seen:
    """Records what the handlers of the jobs after the producer got in their ``results``."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}

    def __call__(self, job: str) -> Any:
        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            self.results[job] = event["results"]
            return {"ok": True}

        return handler


def test_an_output_with_dotted_and_dollar_keys_and_big_integers_reaches_when_and_the_jobs_after_it_exactly(
    store: MongoStore,
) -> None:
    spec = workflow(
        "awkward",
        {
            "p": {
                "make": {},
                "use": {"after": ["make"], "when": f"{AMOUNT} == `1152921504606846976`"},
                "skip": {"after": ["make"], "when": f"{AMOUNT} == `1152921504606846977`"},
            },
            "q": {"later": {}},
        },
    )
    seen = Seen()
    outcome = Driver(
        store,
        spec,
        handlers={"make": lambda e, c: AWKWARD, "use": seen("use"), "later": seen("later")},
        faults=Faults(duplicate=2),
    ).run()

    assert outcome.run["status"] == "succeeded", outcome.run.get("error")
    assert outcome.run["jobs"]["skip"]["state"] == "skipped", "the when compared the exact integer"
    assert seen.results["use"]["make"] == AWKWARD
    assert seen.results["use"]["make"]["alice@example.com"]["report.pdf"] == 2**70


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(["a", "list", {"a.b": 1}], id="list"),
        pytest.param("text", id="string"),
        pytest.param(42, id="integer"),
        pytest.param(2**70, id="big-integer"),
        pytest.param(2.5, id="float"),
        pytest.param(False, id="false"),
        pytest.param({}, id="empty-object"),
    ],
)
def test_a_handler_may_return_any_json_value_and_the_jobs_after_it_get_it(
    store: MongoStore, value: Any
) -> None:
    spec = workflow("values", {"p": {"make": {}, "use": {"after": ["make"], "when": "results.make != null"}}})
    seen = Seen()
    outcome = Driver(store, spec, handlers={"make": lambda e, c: value, "use": seen("use")}).run()

    assert outcome.run["status"] == "succeeded", outcome.run.get("error")
    assert seen.results["use"] == {"make": value}
    assert type(seen.results["use"]["make"]) is type(value)


def test_a_fan_out_of_awkward_outputs_is_read_back_exactly(store: MongoStore) -> None:
    spec = workflow(
        "fan",
        {
            "p": {
                "fan": {"for_each": "input.names"},
                "sum": {"after": ["fan"], "when": 'results.fan[1]."$n" == `18446744073709551617`'},
            }
        },
    )

    def item(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {f"{event['item']}.txt": event["item"], "$n": 2**64 + event["index"]}

    seen = Seen()
    outcome = Driver(store, spec, handlers={"fan": item, "sum": seen("sum")}).run(
        run_input={"names": ["a", "b", "c"]}
    )

    assert outcome.run["status"] == "succeeded", outcome.run.get("error")
    assert seen.results["sum"]["fan"] == [{f"{n}.txt": n, "$n": 2**64 + i} for i, n in enumerate("abc")]


def test_a_for_each_over_awkward_values_hands_each_item_over_exactly(store: MongoStore) -> None:
    rows = [{"a.b": 1}, {"n": 2**70}, {"$x": [2**60]}, "plain"]
    spec = workflow(
        "fan_rows",
        {
            "p": {
                "make": {},
                "fan": {"after": ["make"], "for_each": "results.make.rows"},
                "sum": {"after": ["fan"]},
            }
        },
    )
    seen = Seen()
    outcome = Driver(
        store,
        spec,
        handlers={"make": lambda e, c: {"rows": rows}, "fan": lambda e, c: e["item"], "sum": seen("sum")},
    ).run()

    assert outcome.run["status"] == "succeeded", outcome.run.get("error")
    assert seen.results["sum"]["fan"] == rows


def test_an_output_that_cannot_travel_as_it_is_is_kept_by_reference(store: MongoStore) -> None:
    payload = {"run_id": "rv", "workflow": "w", "phase": "p", "job": "j", "attempt": 1}

    result = run_attempt(store, lambda e, c: {"a.b": 2**60}, payload, None, "req")

    assert result.outcome == "success"
    status = store.find_status("rv", "p", "j", "success", 1)
    assert status is not None
    assert "output" not in status
    assert status["outputRef"] == "output:rv/j/1"
    assert store.items().outputs.load(status["outputRef"]) == {"a.b": 2**60}


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        pytest.param({1: "integer key"}, "has the key 1 at $: keys are strings in JSON", id="integer-key"),
        pytest.param({"a": [{None: 1}]}, "has the key None at $.a[0]", id="null-key-in-a-list"),
        pytest.param({"x": float("inf")}, "is not JSON", id="infinity"),
    ],
)
def test_an_output_that_is_not_json_fails_the_attempt_with_the_reason(
    store: MongoStore, output: Any, reason: str
) -> None:
    payload = {"run_id": "rn", "workflow": "w", "phase": "p", "job": "j", "attempt": 1}

    result = run_attempt(store, lambda e, c: output, payload, None, "req")

    assert result.outcome == "failed"
    assert reason in (result.error or "")
