"""A fan-out through the local runner, the same parts as the cloud: 1,000 items returning 2 KB
each, then a job that sums them; shown as one line, summarized in ``--json`` and ``history``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest

from tests.cli_harness import cli

SPEC = Path(__file__).resolve().parent / "specs" / "runner" / "fan_out_items.yaml"


@pytest.fixture
def database(mongo_client: pymongo.MongoClient[dict]) -> Iterator[str]:
    name = f"fan_out_{uuid.uuid4().hex[:12]}"
    yield name
    mongo_client.drop_database(name)


def test_a_thousand_items_of_2_kb_then_a_sum_succeed_and_show_as_one_line(
    mongo_uri: str, database: str, mongo_client: pymongo.MongoClient[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # wide enough that the progress line shows the counts whole
    result = cli("run", str(SPEC), "--mongo-uri", mongo_uri, "--database", database, "--timeout", "120")

    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "process_item" in line]
    assert len(lines) == 1, "one line for the fan-out, not a line per item"
    assert "succeeded" in lines[0]
    assert "1000/1000 done, 0 failed, 0 running" in lines[0]
    assert "1000/1000 done, 0 failed, 0 running" in result.stdout, "the summary table says it too"

    run_id = mongo_client[database]["state-machines"].find_one({}, {"_id": 1})["_id"]  # type: ignore[index]
    status = cli("status", run_id, "--json", "--mongo-uri", mongo_uri, "--database", database)
    jobs = status.report["jobs"]
    assert jobs["sum_items"]["output"] == {
        "sum": sum(range(1000)),
        "count": 1000,
        "in_order": True,
        "bytes": 2000 * 1000,
    }
    assert jobs["process_item"]["items"] == {
        "count": 1000,
        "done": 1000,
        "failed": 0,
        "running": 0,
        "waiting": 0,
        "not_started": 0,
    }
    assert jobs["process_item"]["output"] is None
    assert jobs["process_item"]["output_ref"] == f"items:{run_id}/process_item"
    document = mongo_client[database]["state-machines"].find_one({"_id": run_id})
    assert len(json.dumps(document, default=str)) < 64 * 1024, "the run document holds no item"

    history = cli("history", run_id, "--mongo-uri", mongo_uri, "--database", database)
    item_lines = [line for line in history.stdout.splitlines() if "items:" in line]
    assert len(item_lines) == 1
    assert "1000 started" in item_lines[0]
    assert "1000 success" in item_lines[0]


def test_an_item_past_its_timeout_is_reported_as_lambda_would_and_retried(
    mongo_uri: str, database: str, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    spec = SPEC.with_name("item_times_out.yaml")
    run_input = {"items": ["a", "b", "c"], "slow": 1, "release": str(release)}
    try:
        result = cli(
            "run",
            str(spec),
            "--json",
            "--mongo-uri",
            mongo_uri,
            "--database",
            database,
            "--timeout",
            "30",
            "--input",
            json.dumps(run_input),
        )
    finally:
        release.touch()  # lets the first attempt's thread end

    assert result.exit_code == 0, result.stderr
    job = result.report["jobs"]["slow_items"]
    assert job["items"] == {
        "count": 3,
        "done": 3,
        "failed": 0,
        "running": 0,
        "waiting": 0,
        "not_started": 0,
    }
    assert job["executions"] == 4, "three items, one of them twice"


def test_duplicate_deliveries_leave_each_item_its_whole_retry_budget(mongo_uri: str, database: str) -> None:
    # Every item fails every attempt; each report delivered twice, by handlers racing each other.
    spec = SPEC.with_name("items_always_fail.yaml")
    result = cli(
        "run",
        str(spec),
        "--json",
        "--mongo-uri",
        mongo_uri,
        "--database",
        database,
        "--timeout",
        "60",
        "--faults",
        "duplicate=2",
        "--input",
        json.dumps({"items": ["a", "b", "c"]}),
    )

    assert result.exit_code == 1, result.stderr
    job = result.report["jobs"]["doomed_items"]
    assert job["items"] == {
        "count": 3,
        "done": 0,
        "failed": 3,
        "running": 0,
        "waiting": 0,
        "not_started": 0,
    }
    assert [(failed["index"], failed["item"]) for failed in job["failed_items"]] == [
        (0, "a"),
        (1, "b"),
        (2, "c"),
    ]
    assert job["executions"] == 3 * 4, "each item ran 1 + retries times: duplicates use up none"
