"""The ``<workflow>-reconciler`` Lambda function: one pass over its own workflow's runs, with its
figures as one CloudWatch embedded-metric-format line on standard output."""

from __future__ import annotations

import json
from datetime import timedelta

import pymongo
import pytest

from runtime import contracts
from runtime.handlers import reconciler as reconciler_function
from runtime.service.reconciler import Reconciler
from runtime.service.runs import start_run
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import RecordingDispatcher, workflow

LINE = workflow("line", {"p": {"a": {}}})


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def test_a_pass_reports_its_repairs_as_embedded_metrics(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = start_run(store, LINE).run_id  # its workflow_started is never delivered
    start_run(store, workflow("other", {"p": {"b": {}}}))
    dispatcher = RecordingDispatcher()
    sweeper = Reconciler(store, dispatcher, stale_after=timedelta(0), workflow="line")
    monkeypatch.setenv("WORKFLOW_NAME", "line")
    monkeypatch.setattr(reconciler_function, "_state", {"reconciler": sweeper})

    answer = reconciler_function.handler({"source": "aws.scheduler"}, None)

    assert answer == {
        "runs_checked": 1,
        "statuses_applied": 1,
        "redispatched": 0,
        "repaired_runs": [run_id],
        "slots_released": 0,
        "queued_started": 0,
    }
    assert [(event.run_id, event.job) for event in dispatcher.events] == [(run_id, "a")]
    [line] = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    [directive] = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == contracts.RECONCILER_METRICS_NAMESPACE
    assert directive["Dimensions"] == [["Workflow"]]
    assert {metric["Name"] for metric in directive["Metrics"]} == {
        "RunsChecked",
        "RunsRepaired",
        "StatusesApplied",
        "AttemptsRedispatched",
        "SlotsReleased",
        "QueuedRunsStarted",
    }
    assert isinstance(record["_aws"]["Timestamp"], int)
    assert (record["Workflow"], record["RunsChecked"], record["RunsRepaired"], record["StatusesApplied"]) == (
        "line",
        1,
        1,
        1,
    )
    assert record["repairedRuns"] == [run_id]


def test_the_alarm_watches_the_metric_the_function_writes() -> None:
    from constructs import monitoring

    assert monitoring.RECONCILER_METRICS_NAMESPACE == contracts.RECONCILER_METRICS_NAMESPACE
    assert "RunsRepaired" in reconciler_function.METRICS
