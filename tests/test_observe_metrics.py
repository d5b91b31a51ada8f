"""Metrics as CloudWatch embedded metric format (docs/observability.md): the lines the functions
print are valid EMF, and the synthesized dashboard and alarms draw exactly the metrics (names
and dimensions) the functions emit, checked both ways on real runs (a retry, a fan-out, a
failure handler, a run queued behind another, a cancelled run)."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
import pytest
from aws_cdk import Stack
from jsonschema import Draft202012Validator

from cdk_app.console.prometheus import Registry
from cdk_app.console.server import serving_console
from cdk_app.testkit import WorkflowTest, raises, sequence
from runtime.aws import metrics
from runtime.aws.metrics import rejected_metric_line
from runtime.definition.loader import load_workflow
from runtime.engine.timers import pending_timers
from runtime.handlers.reconciler import metrics_record
from runtime.service.reconciler import ReconcileReport
from runtime.service.timers import fire_due_timers
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.cdk_fixtures import resources_of_type, synthesize, templates_of

SPEC = "tests/specs/observe/traced.yaml"
WORKFLOW = "traced"

UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second",
    "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second",
    "Count/Second", "None",
}  # fmt: skip
EMF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "CloudWatchMetrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "properties": {
                            "Namespace": {"type": "string", "minLength": 1, "maxLength": 1024},
                            "Dimensions": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": 30,
                                    "items": {"type": "string", "minLength": 1, "maxLength": 250},
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "required": ["Name"],
                                    "properties": {
                                        "Name": {"type": "string", "minLength": 1, "maxLength": 1024},
                                        "Unit": {"enum": sorted(UNITS)},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}
"""The embedded metric format's specification, as a JSON Schema (its required keys and their
shapes); ``_check_references`` adds what a schema cannot say."""

Key = tuple[str, str, frozenset[tuple[str, str]]]
"""(namespace, metric name, dimension name -> value)."""


def _check_references(record: dict[str, Any]) -> None:
    """Each dimension names a top-level string member, each metric a top-level number."""
    for directive in record["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            assert all(isinstance(record.get(name), str) for name in dimension_set), dimension_set
        for metric in directive["Metrics"]:
            value = record.get(metric["Name"])
            assert isinstance(value, int | float), metric
            assert not isinstance(value, bool), metric


def _emitted(records: list[dict[str, Any]]) -> set[Key]:
    return {
        (directive["Namespace"], metric["Name"], frozenset((name, record[name]) for name in dimension_set))
        for record in records
        for directive in record["_aws"]["CloudWatchMetrics"]
        for dimension_set in directive["Dimensions"]
        for metric in directive["Metrics"]
    }


def _broken(event: dict[str, Any]) -> Any:
    if event["input"].get("break"):
        raise ValueError("bad data")
    return "fine"


@pytest.fixture(scope="module")
def printed(mongo_uri: str) -> list[dict[str, Any]]:
    """Every record a run of the workflow emits, through the Lambda handlers' sink (standard
    output lines, parsed back), plus the reconciler's and the rejected statuses' lines."""
    lines: list[str] = []
    sink = lambda record: lines.append(json.dumps(record))  # noqa: E731 - the sink Lambda's print_line is
    metrics.add_sink(sink)
    test = WorkflowTest(
        SPEC,
        mongo_uri,
        fakes={
            "flaky": sequence(raises(ConnectionError("down")), {"n": 2}),
            "fan": "ok",
            "broken": _broken,
            "cleanup": {"cleaned": True},
        },
    )
    try:
        test.start({"items": ["a", "b"], "break": True})
        # Queued (concurrency limit 1) until the first has ended, a minute on: flaky's retry delay.
        test.start({"items": [], "break": False})
        test.run_until_idle()
        test.start({"items": []})
        test.cancel("not today")
        test.run_until_idle()
    finally:
        test.close()
        metrics.remove_sink(sink)
    now = datetime.now(UTC)
    lines.append(json.dumps(metrics_record(WORKFLOW, ReconcileReport(runs_checked=1), now)))
    lines.append(rejected_metric_line(WORKFLOW, now))
    return [json.loads(line) for line in lines]


def test_every_line_is_valid_embedded_metric_format(printed: list[dict[str, Any]]) -> None:
    validator = Draft202012Validator(EMF_SCHEMA)
    for record in printed:
        assert list(validator.iter_errors(record)) == []
        _check_references(record)
    names = {metric for namespace, metric, _ in _emitted(printed)}
    assert names == set(metrics.CATALOG)


def test_a_run_and_each_attempt_carry_what_logs_insights_filters_by(printed: list[dict[str, Any]]) -> None:
    attempts = [record for record in printed if metrics.ATTEMPT_DURATION.name in record]
    assert {record["Job"] for record in attempts} == {"flaky", "fan", "broken", "cleanup"}
    assert all({"runId", "attempt", "traceId"} <= set(record) for record in attempts)
    retried = [record for record in attempts if record.get(metrics.RETRIES.name)]
    assert [(record["Job"], record["attempt"]) for record in retried] == [("flaky", 2)] * 2
    ended = [record for record in printed if metrics.RUN_DURATION.name in record]
    assert sorted(name for record in ended for name in record if name.startswith("Runs")) == [
        "RunsCancelled",
        "RunsFailed",
        "RunsSucceeded",
    ]


def test_a_queued_run_counts_its_wait_and_a_timer_how_late_it_fired(printed: list[dict[str, Any]]) -> None:
    queued = [record for record in printed if metrics.QUEUE_WAIT.name in record]
    waits = sorted(record[metrics.QUEUE_WAIT.name] for record in queued)
    # Every run of a workflow with concurrency starts from the queue; the second waited for the
    # first's end, a minute after both were started (the virtual clock moves by the timers).
    assert len(waits) == 3
    assert waits[:2] == [0, 0]
    assert 60 <= waits[2] < 61
    late = [record for record in printed if metrics.TIMER_LATENESS.name in record]
    # flaky's retry (its attempt 2) in the two runs that got that far; the virtual clock fires it on time.
    assert [(record[metrics.TIMER_LATENESS.name], record["timer"]) for record in late] == [
        (0, "timer_fired:flaky:2")
    ] * 2
    assert all({"runId", "traceId"} <= set(record) for record in queued + late)


def test_a_timer_fired_late_counts_how_late_once(
    mongo_uri: str, mongo_client: pymongo.MongoClient[dict[str, Any]], store_settings: StoreSettings
) -> None:
    records: list[dict[str, Any]] = []
    sink = records.append
    metrics.add_sink(sink)
    test = WorkflowTest(
        SPEC,
        mongo_uri,
        fakes={"flaky": raises(ConnectionError("down")), "fan": "ok", "broken": "ok", "cleanup": "ok"},
        database=store_settings.database,
    )
    try:
        run_id = test.start({"items": []}).run_id  # flaky failed: its retry is due in a minute
        store = MongoStore(mongo_client, store_settings)
        run = store.read_run(run_id)
        assert run is not None
        ((due, _),) = pending_timers(run)
        fired = fire_due_timers(store, due + timedelta(seconds=7.5), WORKFLOW)
        # A later sweep finds the timer fired: no second count.
        again = fire_due_timers(store, due + timedelta(seconds=9), WORKFLOW)
    finally:
        metrics.remove_sink(sink)
        test.close()
    assert (fired, again) == (1, 0)
    late = [record for record in records if metrics.TIMER_LATENESS.name in record]
    assert [(record[metrics.TIMER_LATENESS.name], record["runId"]) for record in late] == [(7.5, run_id)]


def _dashboard_metrics(template: dict[str, Any]) -> tuple[set[Key], list[dict[str, Any]]]:
    (dashboard,) = resources_of_type(template, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]
    if isinstance(body, dict):
        body = "".join(part if isinstance(part, str) else "TOKEN" for part in body["Fn::Join"][1])
    widgets = json.loads(body)["widgets"]
    found: set[Key] = set()
    for widget in widgets:
        for entry in widget["properties"].get("metrics", []):
            fields = [field for field in entry if not isinstance(field, dict)]
            namespace, name, *dimensions = fields
            pairs = frozenset(zip(dimensions[::2], dimensions[1::2], strict=True))
            found.add((namespace, name, pairs))
    return found, widgets


def _alarm_metrics(template: dict[str, Any]) -> set[Key]:
    found: set[Key] = set()
    for alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").values():
        properties = alarm["Properties"]
        stats = [properties] if "MetricName" in properties else [
            query["MetricStat"]["Metric"] for query in properties.get("Metrics", []) if "MetricStat" in query
        ]  # fmt: skip
        for stat in stats:
            if stat.get("Namespace") != metrics.NAMESPACE:
                continue
            pairs = frozenset((dimension["Name"], dimension["Value"]) for dimension in stat["Dimensions"])
            found.add((stat["Namespace"], stat["MetricName"], pairs))
    return found


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    _, built = synthesize([load_workflow(SPEC)])
    return templates_of(Stack.of(built.workflows[WORKFLOW]))[f"Workflow-{WORKFLOW}"]


def _shape(keys: set[Key]) -> set[tuple[str, str, frozenset[str]]]:
    return {
        (namespace, name, frozenset(dimension for dimension, _ in pairs)) for namespace, name, pairs in keys
    }


def test_the_dashboard_draws_exactly_the_metrics_the_functions_emit(
    printed: list[dict[str, Any]], template: dict[str, Any]
) -> None:
    emitted = _emitted(printed)
    drawn, widgets = _dashboard_metrics(template)
    # Names and dimension names, both ways: nothing drawn that no function emits, nothing
    # emitted that the dashboard leaves out.
    assert _shape(drawn) == _shape(emitted)
    # And the values: the workflow, and jobs that report under those names.
    values = {(dimension, value) for _, _, pairs in emitted for dimension, value in pairs}
    assert {pair for _, _, pairs in drawn for pair in pairs} <= values
    assert _alarm_metrics(template) <= {key for key in drawn}
    assert any(widget["type"] == "alarm" for widget in widgets)


def test_the_spec_sets_alarms_on_failure_rate_and_p99_duration(template: dict[str, Any]) -> None:
    alarms = {
        alarm["Properties"]["AlarmName"]: alarm["Properties"]
        for alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").values()
    }
    rate = alarms["traced-alarm-failure-rate"]
    assert rate["Threshold"] == 0.05
    assert rate["ComparisonOperator"] == "GreaterThanThreshold"
    (expression,) = [query for query in rate["Metrics"] if "Expression" in query]
    assert "FILL(f, 0) /" in expression["Expression"]
    p99 = alarms["traced-alarm-duration-p99"]
    (query,) = p99["Metrics"]
    stat = query["MetricStat"]
    assert (stat["Metric"]["MetricName"], stat["Stat"], p99["Threshold"]) == ("RunDuration", "p99", 600)
    assert all(alarm["AlarmActions"] for alarm in (rate, p99))


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict[str, Any]], store_settings: StoreSettings) -> MongoStore:
    return MongoStore(mongo_client, store_settings)


def test_the_dev_servers_metrics_page_adds_up_the_same_records(
    printed: list[dict[str, Any]], store: MongoStore
) -> None:
    registry = Registry()
    for record in printed:
        registry.record(record)
    with (
        serving_console(store, "127.0.0.1", 0, False, metrics=registry) as url,
        urllib.request.urlopen(f"{url}metrics") as response,  # noqa: S310 - a local URL
    ):
        content_type, text = response.headers["Content-Type"], response.read().decode()
    assert content_type.startswith("text/plain; version=0.0.4")
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    label = f'{{workflow="{WORKFLOW}"}}'
    assert samples[f"workflows_runs_started_total{label}"] == "3"
    assert samples[f"workflows_runs_failed_total{label}"] == "1"
    assert samples[f"workflows_runs_cancelled_total{label}"] == "1"
    assert samples[f"workflows_run_duration_seconds_count{label}"] == "3"
    flaky = f'{{workflow="{WORKFLOW}",job="flaky"}}'
    assert samples[f"workflows_retries_total{flaky}"] == "2"
    # Its first attempt failed in each of the three runs (the third was cancelled while it waited
    # for its retry); the second ran in two.
    assert samples[f"workflows_attempts_failed_total{flaky}"] == "3"
    assert samples[f"workflows_attempt_duration_seconds_count{flaky}"] == "5"
    assert samples[f"workflows_queue_wait_seconds_count{label}"] == "3"
    assert 60 <= float(samples[f"workflows_queue_wait_seconds_sum{label}"]) < 61
    assert samples[f"workflows_timer_lateness_seconds_count{label}"] == "2"
    emitted = sum(record.get("AttemptsSucceeded", 0) for record in printed if record.get("Job") == "fan")
    assert samples[f'workflows_attempts_succeeded_total{{workflow="{WORKFLOW}",job="fan"}}'] == str(emitted)
    assert "# TYPE workflows_runs_repaired_total counter" in text
