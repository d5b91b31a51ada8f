"""The console's workflow page figures (``cdk_app.console.stats``) on runs whose outcomes and
times the test knows: three runs of the traced workflow (one fails, one succeeds after a retry's
minute, without jitter; one is cancelled) through the test kit, read back as the page reads them."""

from __future__ import annotations

from typing import Any

import pymongo

from cdk_app.console.stats import percentile, workflow_stats
from cdk_app.testkit import WorkflowTest, raises, sequence
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings

SPEC = "tests/specs/observe/traced.yaml"


def _broken(event: dict[str, Any]) -> Any:
    if event["input"].get("break"):
        raise ValueError("bad data")
    return "fine"


def test_the_workflow_page_counts_runs_by_hour_and_outcome_and_finds_the_slowest_jobs(
    mongo_uri: str, mongo_client: pymongo.MongoClient[dict[str, Any]], store_settings: StoreSettings
) -> None:
    test = WorkflowTest(
        SPEC,
        mongo_uri,
        fakes={"flaky": sequence(raises(ConnectionError("down")), {"n": 2}), "fan": "ok", "broken": _broken},
        database=store_settings.database,
    )
    try:
        test.start({"items": ["a"], "break": True})
        test.run_until_idle()
        test.start({"items": [], "break": False})
        test.run_until_idle()
        test.start({"items": []})
        test.cancel("not today")
        stats = workflow_stats(MongoStore(mongo_client, store_settings), "traced", test.now, 3)
    finally:
        test.close()
    assert stats["runs"] == 3
    assert len(stats["per_hour"]) == 3
    totals = {
        state: sum(hour[state] for hour in stats["per_hour"])
        for state in ("succeeded", "failed", "cancelled")
    }
    assert totals == {"succeeded": 1, "failed": 1, "cancelled": 1}
    assert stats["duration_seconds"]["runs"] == 3
    # The two runs that ran to their end waited a minute for flaky's retry.
    assert stats["duration_seconds"]["p90"] >= 60
    # A job's time is its last attempt's, dispatch to end: no time passes in a fake's attempt.
    slowest = {job["job"]: job for job in stats["slowest_jobs"]}
    assert set(slowest) == {"flaky", "fan", "broken", "cleanup"}
    assert slowest["flaky"]["runs"] == 2
    assert all(job["max_seconds"] == 0 for job in slowest.values())


def test_percentiles_are_nearest_rank() -> None:
    values = [float(value) for value in range(1, 101)]
    assert [percentile(values, rank) for rank in (50, 90, 99)] == [50.0, 90.0, 99.0]
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
