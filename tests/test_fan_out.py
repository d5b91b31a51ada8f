"""``for_each`` jobs: the spec keys and their checks, the decisions that start a fan-out, and
runs through the real orchestrator and job wrapper on a real MongoDB server (item events,
outputs in index order, retries per item, redrive of the failed items only); and outputs past
an event's size, kept by reference, that dependents, ``when`` and ``for_each`` read as values."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pymongo
import pytest

from runtime import limits
from runtime.definition.loader import workflow_from_document
from runtime.documents.events import JobEvent
from runtime.documents.items import MAX_ITEMS, FanOut, Lane, allowed_failures
from runtime.documents.run import JobRecord
from runtime.engine.attempts import attempt_blocked
from runtime.engine.decide import decide
from runtime.engine.fanout import results_read
from runtime.engine.transition import Transition
from runtime.errors import SpecError
from runtime.service.operations import request_redrive
from runtime.service.runs import start_run
from runtime.statuses import JobState, RunState, StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import Driver, workflow
from tests.test_engine_decisions import NOW, report, run_of
from tests.test_operations_faults import Cloud


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def compiled(jobs: dict[str, dict[str, Any]], **spec: Any) -> Any:
    return workflow_from_document({"workflow": "w", "phases": {"p": {"jobs": jobs}}, **spec})


def problems(jobs: dict[str, dict[str, Any]], **spec: Any) -> list[str]:
    with pytest.raises(SpecError, match=r"\$\.") as error:
        compiled(jobs, **spec)
    return [str(problem) for problem in error.value.problems]


# -- the spec --------------------------------------------------------------------------------------


def test_the_keys_reach_the_ir_and_the_run_snapshot() -> None:
    definition = compiled(
        {
            "list": {},
            "fan": {
                "after": ["list"],
                "for_each": "results.list.files",
                "max_concurrency": 5,
                "tolerated_failures": "10%",
            },
        }
    )
    fan = definition.job("fan")
    assert (fan.for_each, fan.max_concurrency, fan.tolerated_failures) == ("results.list.files", 5, "10%")
    assert type(definition).from_document(definition.to_document()).job("fan") == fan
    assert definition.job("list").max_concurrency == 100, "the default"


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        (
            {"a": {"max_concurrency": 3}},
            "$.phases.p.jobs.a.max_concurrency: 'max_concurrency' has no effect without 'for_each'",
        ),
        (
            {"a": {"tolerated_failures": 1}},
            "$.phases.p.jobs.a.tolerated_failures: 'tolerated_failures' has no effect",
        ),
        ({"a": {"for_each": "input.x[", "retries": 0}}, "$.phases.p.jobs.a.for_each: invalid JMESPath"),
        (
            {"a": {"for_each": "items"}},
            "$.phases.p.jobs.a.for_each: 'items' reads 'items', but 'for_each' sees only",
        ),
        (
            {"a": {}, "b": {"for_each": "results.a.files"}},
            "'for_each' reads results.a, but 'a' is neither in the 'after'",
        ),
        (
            {"a": {"for_each": "input.x", "max_concurrency": 0}},
            "$.phases.p.jobs.a.max_concurrency: 0 is out of range: must be between 1 and 1000",
        ),
        ({"a": {"for_each": "input.x", "max_concurrency": 1001}}, "must be between 1 and 1000"),
        (
            {"a": {"for_each": "input.x", "tolerated_failures": "150%"}},
            "$.phases.p.jobs.a.tolerated_failures: invalid value '150%': a percentage",
        ),
        (
            {"a": {"for_each": "input.x", "tolerated_failures": -1}},
            "$.phases.p.jobs.a.tolerated_failures: -1 is out of range",
        ),
    ],
    ids=[
        "concurrency-alone",
        "tolerance-alone",
        "does-not-parse",
        "reads-a-bare-name",
        "reads-a-job-not-waited-for",
        "no-concurrency",
        "too-much-concurrency",
        "percentage-over-100",
        "negative-tolerance",
    ],
)
def test_validate_says_what_is_wrong_with_a_fan_out(jobs: dict[str, dict[str, Any]], message: str) -> None:
    assert any(message in problem for problem in problems(jobs)), problems(jobs)


def test_a_failure_handler_cannot_fan_out() -> None:
    found = problems({"a": {}}, on_failure={"h": {"for_each": "input.x"}})
    assert any("$.on_failure.h.for_each: a failure handler cannot fan out" in problem for problem in found)


def test_what_an_expression_reads_of_the_results() -> None:
    assert results_read("results.list.files[?size > `0`]") == {"list"}
    assert results_read("[results.a, results.b.c]") == {"a", "b"}
    assert results_read("input.items") == frozenset()
    assert results_read("keys(results)") is None, "anything under results"


@pytest.mark.parametrize(
    ("tolerated", "count", "allowed"), [(3, 10, 3), ("10%", 10, 1), ("5%", 10, 0), ("100%", 7, 7)]
)
def test_a_percentage_of_the_items_rounds_down(tolerated: Any, count: int, allowed: int) -> None:
    assert allowed_failures(tolerated, count) == allowed


# -- the decision that starts a fan-out --------------------------------------------------------------

FAN = compiled({"fan": {"for_each": "input.items", "max_concurrency": 2}, "after_fan": {"after": ["fan"]}})


def _started(run_input: Any) -> Transition:
    transition = decide(run_of(FAN, run_input), report(StatusName.WORKFLOW_STARTED), NOW)
    assert isinstance(transition, Transition), transition
    return transition


def test_a_fan_out_starts_with_its_items_to_store_and_no_job_dispatched() -> None:
    transition = _started({"items": ["a", "b", "c"]})

    assert transition.dispatches == ()
    assert [(start.job, start.items, start.concurrency) for start in transition.fan_outs] == [
        ("fan", ("a", "b", "c"), 2)
    ]
    record = transition.changes["jobs.fan"]
    assert (record["state"], record["attempt"]) == ("dispatched", 1)
    assert record["fanOut"] == {
        "count": 3,
        "concurrency": 2,
        "done": 0,
        "failed": 0,
        "notStarted": 0,
        "lanes": {},
    }


def test_an_empty_array_succeeds_at_once_with_an_empty_output() -> None:
    transition = _started({"items": []})

    assert transition.changes["jobs.fan"]["state"] == "succeeded"
    assert transition.changes["jobs.fan"]["output"] == []
    assert [(event.job, event.results) for event in transition.dispatches] == [("after_fan", {"fan": []})]


@pytest.mark.parametrize(
    ("run_input", "message"),
    [
        ({"items": {"a": 1}}, "the for_each of 'fan' (input.items) gave dict, not an array of items"),
        ({}, "the for_each of 'fan' (input.items) gave null, not an array of items"),
        ({"items": list(range(MAX_ITEMS + 1))}, "gave 10,001 items; a job fans out to at most 10,000"),
    ],
    ids=["an-object", "nothing", "too-many"],
)
def test_a_for_each_that_gives_no_array_or_too_many_items_fails_the_job_and_says_why(
    run_input: Any, message: str
) -> None:
    transition = _started(run_input)

    assert transition.changes["jobs.fan.state"] == "failed"
    assert message in transition.changes["error"]
    assert transition.fan_outs == ()


# -- runs --------------------------------------------------------------------------------------------


def test_each_item_gets_its_value_and_index_and_the_dependent_the_outputs_in_index_order(
    store: MongoStore,
) -> None:
    spec = workflow(
        "order",
        {"p": {"fan": {"for_each": "input.words", "max_concurrency": 3}, "join": {"after": ["fan"]}}},
    )
    events: list[dict[str, Any]] = []

    def fan(event: dict[str, Any], context: Any) -> dict[str, Any]:
        events.append(event)
        return {"upper": event["item"].upper(), "at": event["index"]}

    outcome = Driver(
        store, spec, handlers={"fan": fan, "join": lambda e, c: {"got": e["results"]["fan"]}}
    ).run(run_input={"words": ["ab", "cd", "ef", "gh", "ij"]})

    assert outcome.run["status"] == "succeeded"
    assert outcome.run["jobs"]["join"]["output"] == {
        "got": [
            {"upper": word.upper(), "at": index} for index, word in enumerate(["ab", "cd", "ef", "gh", "ij"])
        ]
    }
    assert sorted((event["index"], event["item"]) for event in events) == list(
        enumerate(["ab", "cd", "ef", "gh", "ij"])
    )
    assert all(event["input"] == {"words": ["ab", "cd", "ef", "gh", "ij"]} for event in events)
    assert "references" not in events[0], "the wrapper resolves references before the handler sees them"
    document = store.load_run(outcome.run["_id"])
    assert document is not None
    assert document["jobs"]["fan"]["output"] is None, "the array is not in the run"
    assert document["jobs"]["fan"]["outputRef"] == f"items:{outcome.run['_id']}/fan"


def test_an_output_too_large_for_an_event_reaches_its_dependent_and_its_when(store: MongoStore) -> None:
    big = {"rows": ["x" * 100] * 3000}
    assert limits.json_bytes(big) > limits.OUTPUT_INLINE_MAX_BYTES
    spec = workflow(
        "large",
        {"p": {"big": {}, "use": {"after": ["big"], "when": "length(results.big.rows) > `2999`"}}},
    )
    got: dict[str, Any] = {}

    outcome = Driver(
        store, spec, handlers={"big": lambda e, c: big, "use": lambda e, c: got.update(e) or {}}
    ).run()

    assert outcome.run["status"] == "succeeded"
    assert outcome.run["jobs"]["use"]["state"] == "succeeded", "the when read the value, not the reference"
    assert got["results"]["big"] == big
    success = [s for s in outcome.statuses if s["job"] == "big" and s["status"] == "success"][0]
    assert "output" not in success
    assert success["outputRef"].startswith("output:")
    assert outcome.run["jobs"]["big"]["outputRef"] == success["outputRef"]


def test_a_for_each_over_an_output_kept_by_reference_fans_out_over_its_value(store: MongoStore) -> None:
    names = [f"file-{index:05d}-{'x' * 40}" for index in range(3000)]
    spec = workflow(
        "listing",
        {
            "p": {
                "list": {},
                "fan": {"after": ["list"], "for_each": "results.list.names[:4]", "max_concurrency": 2},
            }
        },
    )
    seen: list[str] = []

    def fan(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(event["item"])
        return {}

    outcome = Driver(store, spec, handlers={"list": lambda e, c: {"names": names}, "fan": fan}).run()

    assert outcome.run["status"] == "succeeded"
    assert sorted(seen) == names[:4]


def test_an_output_past_one_document_is_kept_in_gridfs(store: MongoStore) -> None:
    outputs = store.items().outputs
    value = {"blob": "y" * (limits.RUN_DOCUMENT_MAX_BYTES + 10)}

    ref = outputs.store("r/j/1", value, "w")

    assert ref == "gridfs:r/j/1"
    assert outputs.load(ref) == value


def _fails_for(indexes: set[int]) -> Any:
    def fan(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["index"] in indexes:
            raise RuntimeError(f"item {event['index']} is broken")
        return {"n": event["item"]}

    return fan


@pytest.mark.faults
def test_a_redrive_reruns_only_the_items_that_failed(store: MongoStore) -> None:
    definition = compiled(
        {"fan": {"for_each": "input.items", "max_concurrency": 3, "retries": 0}, "total": {"after": ["fan"]}}
    )
    broken = {2, 6}
    runs: list[int] = []

    def fan(event: dict[str, Any], context: Any) -> dict[str, Any]:
        runs.append(event["index"])
        return _fails_for(broken)(event, context)

    cloud = Cloud(
        store,
        definition,
        handlers={"fan": fan, "total": lambda e, c: {"sum": sum(o["n"] for o in e["results"]["fan"])}},
    )
    start_run(store, definition, run_id="again", input={"items": list(range(10))})
    first = cloud.settle("again")
    assert first["status"] == "failed"
    assert first["jobs"]["fan"]["state"] == "failed"
    ran_first = set(runs)

    broken.clear()
    runs.clear()
    request_redrive(store, "again")
    again = cloud.settle("again")

    assert again["status"] == "succeeded"
    assert again["jobs"]["total"]["output"] == {"sum": sum(range(10))}
    assert set(runs) == {2, 6} | (set(range(10)) - ran_first), "only what did not succeed runs again"
    assert {2, 6} <= set(runs)
    assert len(runs) < 10
    item = store.items().items.find_one({"runId": "again", "index": 2})
    assert item is not None
    assert item["attempt"] >= 2, "attempt numbers go on from the failed one"


def test_the_wrapper_runs_an_item_only_at_the_attempt_its_lane_holds() -> None:
    lane = Lane(index=4, attempt=2)
    record = JobRecord(
        state=JobState.DISPATCHED, attempt=1, fan_out=FanOut(count=9, concurrency=2, lanes={0: lane})
    )
    event = JobEvent(run_id="r", workflow="w", phase="p", job="fan", attempt=2, index=4, item="x")

    assert attempt_blocked(event, (RunState.RUNNING, record)) is None
    stale = attempt_blocked(replace(event, attempt=1), (RunState.RUNNING, record))
    assert stale == "attempt 1 of item 4 of 'fan' is stale: its job has moved on"
    assert attempt_blocked(replace(event, index=6), (RunState.RUNNING, record)) is not None
    failed = replace(record, state=JobState.FAILED)
    assert attempt_blocked(event, (RunState.RUNNING, failed)) is not None


# -- the graph -------------------------------------------------------------------------------------


def test_the_graph_draws_a_fan_out_as_one_node_marked_with_its_expression() -> None:
    from cdk_app.graph import render_dot, render_mermaid

    definition = compiled(
        {
            "list": {},
            "fan": {"after": ["list"], "for_each": "results.list.files", "max_concurrency": 8},
            "sum": {"after": ["fan"]},
        }
    )

    mermaid = render_mermaid(definition)
    dot = render_dot(definition)

    assert 'job_fan[["fan<br/>for each results.list.files<br/>at most 8 at once, tolerates 0"]]' in mermaid
    assert mermaid.count("job_fan[") == 1
    assert (
        '"fan" [id="job_fan", label="fan\\nfor each results.list.files\\nat most 8 at once, '
        'tolerates 0", peripheries=2];' in dot
    )


def test_the_console_shows_a_fan_out_as_its_job_with_counts_not_its_items(store: MongoStore) -> None:
    from cdk_app.console.views import run_json

    spec = workflow("console", {"p": {"fan": {"for_each": "input.items", "max_concurrency": 2}}})
    outcome = Driver(store, spec).run(run_input={"items": list(range(5))})
    run = store.read_run(outcome.run["_id"])
    assert run is not None

    page = run_json(run, store.read_statuses(run.run_id), allow_actions=False)

    job = page["phases"][0]["jobs"][0]
    assert (job["for_each"], job["items"]) == ("input.items", "5/5 done, 0 failed, 0 running")
    assert [(attempt["job"], attempt["attempt"]) for attempt in page["attempts"]] == [("fan", 1)]
    assert all(entry["status"] != "started" for entry in page["history"]), "no item's report"


def test_a_runs_items_and_outputs_kept_by_reference_expire_with_it_and_a_redrive_keeps_them(
    store: MongoStore,
) -> None:
    spec = workflow("kept", {"p": {"fan": {"for_each": "input.items"}}}, retention_days=7)
    big = {"rows": ["x" * 100] * 3000}  # past what an event carries: kept in ``outputs``
    outcome = Driver(store, spec, handlers={"fan": lambda e, c: big if e["index"] == 0 else {}}).run(
        run_input={"items": [0, 1, 2]}
    )
    run_id = outcome.run["_id"]
    expire_at = store.load_run(run_id)["expireAt"]  # type: ignore[index]
    items = store.items().items
    outputs = store.items().outputs.outputs

    assert outcome.run["status"] == "succeeded"
    assert [item.get("expireAt") for item in items.find({"runId": run_id})] == [expire_at] * 3
    [kept] = list(outputs.find({"_id": {"$regex": f"^{run_id}/"}}))
    assert kept["expireAt"] == expire_at
    assert (
        outputs.count_documents({"expireAt": {"$exists": True}, "_id": {"$not": {"$regex": f"^{run_id}/"}}})
        == 0
    )
    indexes = {name for collection in (items, outputs) for name in collection.index_information()}
    assert {"expire_ended_items", "expire_ended_outputs"} <= indexes

    store.expire_statuses(run_id, None)  # what a redrive does

    assert all("expireAt" not in item for item in items.find({"runId": run_id}))
    assert "expireAt" not in outputs.find_one({"_id": kept["_id"]})  # type: ignore[operator]


def test_the_failed_items_show_with_their_index_value_and_error_in_status_the_summary_and_the_console(
    store: MongoStore,
) -> None:
    import json
    import urllib.request

    from rich.console import Console

    from cdk_app.console.server import serving_console
    from cdk_app.terminal.render import print_summary
    from runtime.service.run_view import summarize

    spec = workflow(
        "billing",
        {
            "p": {
                "charge": {
                    "for_each": "input.customers",
                    "max_concurrency": 2,
                    "retries": 0,
                    "tolerated_failures": 2,
                }
            }
        },
    )

    def charge(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["item"] in ("acme", "initech"):
            raise RuntimeError(f"card declined for {event['item']}")
        return {"charged": event["item"]}

    customers = ["globex", "acme", "hooli", "initech"]
    outcome = Driver(store, spec, handlers={"charge": charge}).run(run_input={"customers": customers})
    run_id = outcome.run["_id"]
    assert outcome.run["status"] == "succeeded"

    report = summarize(store, run_id)
    assert report is not None
    failed = report.to_json()["jobs"]["charge"]["failed_items"]
    assert [(entry["index"], entry["item"]) for entry in failed] == [(1, "acme"), (3, "initech")]
    assert all("RuntimeError: card declined for " in entry["error"] for entry in failed)

    console = Console(record=True, width=200, force_terminal=False)
    print_summary(console, report)
    text = console.export_text()
    assert 'item 1 "acme": RuntimeError: card declined for acme' in text
    assert 'item 3 "initech": RuntimeError: card declined for initech' in text

    with (
        serving_console(store, "127.0.0.1", 0, False) as url,
        urllib.request.urlopen(f"{url.rstrip('/')}/api/run?id={run_id}", timeout=10) as answer,
    ):
        page = json.loads(answer.read())
    (job,) = page["phases"][0]["jobs"]
    assert [(entry["index"], entry["item"]) for entry in job["failed_items"]] == [(1, "acme"), (3, "initech")]
