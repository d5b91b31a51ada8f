"""``backfill`` (issue 28, item 3): the runs a workflow's schedule fires in a past range, started
through ``runtime.client.Client`` as the schedule starts them (same run id, ``scheduled_time`` in
the input, ``schedule_overlap`` applied), on a real MongoDB server, from the CLI and the client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pymongo
import pytest

from cdk_app.local.schedules import ScheduleClock
from runtime.client import Client
from runtime.definition.loader import load_workflow
from runtime.errors import RunError
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.cli_harness import cli

HOURLY = "workflow: hourly\nschedule: cron(0 * * * ? *)\nphases:\n  p:\n    jobs:\n      a: {}\n"


@pytest.fixture
def database(mongo_client: pymongo.MongoClient[dict]) -> Iterator[str]:
    name = f"backfill_{uuid.uuid4().hex[:12]}"
    yield name
    mongo_client.drop_database(name)


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], database: str) -> MongoStore:
    store = MongoStore(mongo_client, StoreSettings(database=database))
    store.ensure_indexes()
    return store


def _spec(tmp_path: Path, extra: str = "") -> Path:
    spec = tmp_path / "hourly.yaml"
    spec.write_text(HOURLY + extra)
    return spec


def test_the_fire_times_of_a_cron_in_its_time_zone_both_ends_included(
    tmp_path: Path, store: MongoStore
) -> None:
    spec = _spec(tmp_path)
    spec.write_text(
        HOURLY.replace("cron(0 * * * ? *)", "cron(30 1 * * ? *)") + "schedule_timezone: Europe/Berlin\n"
    )
    planned = Client.on_store(store).scheduled_starts(
        load_workflow(spec), datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 7, 3, 23, 30, tzinfo=UTC)
    )
    # 01:30 in Berlin is 23:30 UTC the day before in summer: the last one is on the range's end.
    assert [start.scheduled_time for start in planned] == [
        "2026-07-01T23:30:00Z",
        "2026-07-02T23:30:00Z",
        "2026-07-03T23:30:00Z",
    ]
    assert planned[0].run_id == "hourly-2026-07-01T23:30:00Z"
    assert planned[0].input == {"scheduled_time": "2026-07-01T23:30:00Z"}


def test_a_rate_counts_from_the_start_of_the_range(tmp_path: Path, store: MongoStore) -> None:
    spec = _spec(tmp_path)
    spec.write_text(HOURLY.replace("cron(0 * * * ? *)", "rate(2 hours)"))
    planned = Client.on_store(store).scheduled_starts(
        load_workflow(spec), datetime(2026, 12, 1, 0, 30, tzinfo=UTC), datetime(2026, 12, 1, 5, tzinfo=UTC)
    )
    assert [start.scheduled_time for start in planned] == [
        "2026-12-01T00:30:00Z",
        "2026-12-01T02:30:00Z",
        "2026-12-01T04:30:00Z",
    ]


def test_a_dry_run_lists_the_runs_and_starts_none(
    tmp_path: Path, mongo_uri: str, database: str, store: MongoStore
) -> None:
    result = cli(
        "backfill", str(_spec(tmp_path)), "--from", "2026-12-01T00:00Z", "--to", "2026-12-01T02:00Z",
        "--dry-run", "--json", "--mongo-uri", mongo_uri, "--database", database,
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert result.listing == [
        {"scheduled_time": f"2026-12-01T0{hour}:00:00Z", "run_id": f"hourly-2026-12-01T0{hour}:00:00Z"}
        for hour in range(3)
    ]
    assert store.read_run("hourly-2026-12-01T00:00:00Z") is None


def test_a_backfill_starts_each_run_once_however_often_it_is_repeated_and_beside_the_schedule(
    tmp_path: Path, mongo_uri: str, database: str, store: MongoStore, mongo_client: pymongo.MongoClient[dict]
) -> None:
    spec = _spec(tmp_path, "schedule_overlap: allow\n")
    argv = ["backfill", str(spec), "--from", "2026-12-01T00:00Z", "--to", "2026-12-01T02:00Z"]
    argv += ["--mongo-uri", mongo_uri, "--database", database]

    first = cli(*argv, "--json")
    again = cli(*argv)

    assert first.exit_code == 0, first.stderr
    assert [(row["run_id"], row["created"], row["status"]) for row in first.listing] == [
        (f"hourly-2026-12-01T0{hour}:00:00Z", True, "running") for hour in range(3)
    ]
    assert "[1/3] hourly-2026-12-01T00:00:00Z started, running" in first.stderr
    assert again.exit_code == 0, again.stderr
    assert again.stdout.count("existed already") == 3
    run = store.read_run("hourly-2026-12-01T01:00:00Z")
    assert run is not None
    assert run.input == {"scheduled_time": "2026-12-01T01:00:00Z"}
    # The schedule itself firing at 02:00 starts the very run the backfill started.
    clock = ScheduleClock(store, lambda _: None)
    workflow = load_workflow(spec)
    clock.tick({"hourly": workflow}, datetime(2026, 12, 1, 1, 59, 30, tzinfo=UTC))
    assert clock.tick({"hourly": workflow}, datetime(2026, 12, 1, 2, 0, 30, tzinfo=UTC)) == [
        "hourly-2026-12-01T02:00:00Z"
    ]
    runs = mongo_client[database][store.settings.runs_collection]
    assert runs.count_documents({}) == 3


def test_a_backfill_applies_the_schedule_overlap(
    tmp_path: Path, mongo_uri: str, database: str, store: MongoStore
) -> None:
    result = cli(
        "backfill", str(_spec(tmp_path)), "--from", "2026-12-01T00:00Z", "--to", "2026-12-01T01:00Z",
        "--mongo-uri", mongo_uri, "--database", database,
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert "[1/2] hourly-2026-12-01T00:00:00Z started, running" in result.stdout
    assert (
        "[2/2] hourly-2026-12-01T01:00:00Z started, cancelled: skipped: 1 scheduled run(s) were running "
        "(schedule_overlap: skip)"
    ) in result.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--from", "2026-12-02", "--to", "2026-12-01"],
            "the range ends (2026-12-01T00:00:00+00:00) before it starts",
        ),
        (
            ["--from", "yesterday", "--to", "2026-12-01"],
            "--from is an ISO 8601 time (e.g. 2026-12-01T00:00Z), got 'yesterday'",
        ),
        (
            ["--from", "2026-01-01", "--to", "2027-12-01"],
            "fires 16,777 times in that range; a backfill starts at most 10,000",
        ),
        (["--from", "2026-12-01", "--to", "2026-12-02", "--dry-run", "--wait"], "--dry-run starts nothing"),
    ],
    ids=["reversed", "not-a-time", "too-many", "dry-run-and-wait"],
)
def test_a_bad_range_is_refused_saying_why(
    tmp_path: Path, mongo_uri: str, database: str, argv: list[str], message: str
) -> None:
    result = cli("backfill", str(_spec(tmp_path)), *argv, "--mongo-uri", mongo_uri, "--database", database)

    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_workflow_without_a_schedule_has_nothing_to_backfill(tmp_path: Path, store: MongoStore) -> None:
    spec = tmp_path / "plain.yaml"
    spec.write_text("workflow: plain\nphases:\n  p:\n    jobs:\n      a: {}\n")
    with pytest.raises(RunError, match="workflow 'plain' has no schedule to backfill"):
        Client.on_store(store).scheduled_starts(load_workflow(spec), datetime.now(UTC), datetime.now(UTC))
