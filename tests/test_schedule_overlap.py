"""Scheduled runs that know about overlap (issue 28, item 3): a workflow's ``schedule_overlap``
(``skip``, ``buffer_one``, ``allow``, ``cancel_other``) on a real MongoDB server, built on the run
slots of ``concurrency``: the scheduled runs share one slot. Checked from the statuses log (no two
scheduled runs' ``workflow_started`` to end overlap) and from the run documents after every
delivery, under duplicated and reordered delivery, crashes and the reconciler."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pymongo
import pytest

from cdk_app.local.faults import CrashAtStep, CrashingStore, InjectedCrash
from runtime.definition.loader import load_workflow
from runtime.definition.model import RunConcurrency, Workflow
from runtime.engine.queue import SCHEDULED_KEY
from runtime.errors import SpecError
from runtime.handlers import starter
from runtime.service.reconciler import Reconciler
from runtime.service.runs import start_run
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import workflow
from tests.test_run_concurrency import Cloud, CrashAt, _end_with_a_crash, most_in_flight

pytestmark = pytest.mark.faults


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def hourly(overlap: str | None = None) -> Workflow:
    options: dict[str, Any] = {} if overlap is None else {"schedule_overlap": overlap}
    return workflow(
        f"hourly_{uuid.uuid4().hex[:8]}",
        {"p": {"a": {}, "b": {"after": ["a"]}}},
        schedule="rate(1 hour)",
        **options,
    )


class Schedule(Cloud):
    """``Cloud`` whose ``start`` is the schedule's: a scheduled run, its id the fire time's."""

    hour = 0

    def start(self, run_input: Any = None, run_id: str | None = None) -> str:
        self.hour += 1
        run_id = run_id or f"{self.definition.name}-2026-12-01T{self.hour:02}:00:00Z"
        started = start_run(self.store, self.definition, run_id=run_id, input=run_input, scheduled=True)
        if started.run_id not in self.run_ids:
            self.run_ids.append(started.run_id)
        return started.run_id

    def holders(self, key: str = SCHEDULED_KEY) -> list[str]:
        return super().holders(key)


def running_alone(cloud: Cloud) -> None:
    assert list(cloud.states().values()).count("running") <= 1
    assert len(cloud.holders()) <= 1


def test_skip_is_the_default_and_ends_a_scheduled_run_that_overlaps_at_once(store: MongoStore) -> None:
    cloud = Schedule(store, hourly())
    first, second = cloud.start(), cloud.start()

    assert cloud.states() == {first: "running", second: "cancelled"}
    skipped = store.load_run(second)
    assert skipped is not None
    assert skipped["error"] == "skipped: 1 scheduled run(s) were running (schedule_overlap: skip)"
    assert skipped["finishedBy"] == "schedule_overlap: skip"
    assert [s["status"] for s in store.run_statuses(second)] == ["workflow_cancelled"]
    cloud.settle()
    assert cloud.holders() == []
    third = cloud.start()
    assert cloud.states()[third] == "running"


def test_a_run_started_by_hand_is_no_scheduled_run_and_overlaps_freely(store: MongoStore) -> None:
    cloud = Schedule(store, hourly("skip"))
    scheduled = cloud.start()
    by_hand = start_run(store, cloud.definition, input={"why": "rerun"}).run_id

    assert store.load_run(by_hand)["status"] == "running"  # type: ignore[index]
    assert "concurrencyKey" not in store.load_run(by_hand)  # type: ignore[operator]
    assert cloud.holders() == [scheduled]


def test_buffer_one_keeps_one_run_waiting_and_skips_the_rest(store: MongoStore) -> None:
    cloud = Schedule(store, hourly("buffer_one"))
    cloud.check = lambda: running_alone(cloud)
    first, waiting, third, fourth = (cloud.start() for _ in range(4))

    assert cloud.states() == {first: "running", waiting: "queued", third: "cancelled", fourth: "cancelled"}
    assert store.load_run(third)["error"] == (  # type: ignore[index]
        f"skipped: a scheduled run was running and {waiting} was waiting already "
        "(schedule_overlap: buffer_one)"
    )
    cloud.settle()

    assert cloud.states() == {
        first: "succeeded",
        waiting: "succeeded",
        third: "cancelled",
        fourth: "cancelled",
    }
    assert most_in_flight(store, cloud.run_ids) == 1
    assert cloud.holders() == []


def test_a_repeated_schedule_delivery_of_the_waiting_run_neither_skips_it_nor_takes_a_slot(
    store: MongoStore,
) -> None:
    cloud = Schedule(store, hourly("buffer_one"))
    first, waiting = cloud.start(), cloud.start()
    for _ in range(3):
        assert cloud.start(run_id=waiting) == waiting
        assert cloud.start(run_id=first) == first

    assert cloud.states() == {first: "running", waiting: "queued"}
    assert cloud.holders() == [first]


def test_allow_starts_every_scheduled_run_without_a_slot(store: MongoStore) -> None:
    cloud = Schedule(store, hourly("allow"))
    runs = [cloud.start() for _ in range(3)]

    assert set(cloud.states().values()) == {"running"}
    assert store.slots().holders(cloud.definition.name, SCHEDULED_KEY) == []
    cloud.settle()
    assert most_in_flight(store, runs) == 3


def test_cancel_other_cancels_the_running_run_and_starts_the_new_one_once_it_ended(
    store: MongoStore,
) -> None:
    cloud = Schedule(store, hourly("cancel_other"))
    cloud.check = lambda: running_alone(cloud)
    old, new = cloud.start(), cloud.start()
    assert cloud.states() == {old: "running", new: "queued"}
    assert [s["status"] for s in store.run_statuses(old)] == ["workflow_started", "cancel_requested"]

    cloud.settle([old])

    assert cloud.states() == {old: "cancelled", new: "running"}
    assert "a newer scheduled run is queued (schedule_overlap: cancel_other)" in store.load_run(old)["error"]  # type: ignore[index]
    cloud.settle()
    assert cloud.states() == {old: "cancelled", new: "succeeded"}
    assert most_in_flight(store, cloud.run_ids) == 1


def test_cancel_other_with_two_new_runs_ends_with_the_newest_one(store: MongoStore) -> None:
    cloud = Schedule(store, hourly("cancel_other"))
    cloud.check = lambda: running_alone(cloud)
    old, middle, newest = cloud.start(), cloud.start(), cloud.start()

    cloud.settle()

    assert cloud.states() == {old: "cancelled", middle: "cancelled", newest: "succeeded"}
    assert most_in_flight(store, cloud.run_ids) == 1
    assert cloud.holders() == []


@pytest.mark.parametrize("overlap", ["skip", "buffer_one", "cancel_other"])
@pytest.mark.parametrize("step", range(1, 9))
def test_a_crash_at_any_write_with_duplicates_never_overlaps_nor_leaks_the_slot(
    store: MongoStore, overlap: str, step: int
) -> None:
    cloud = Schedule(
        store, hourly(overlap), duplicate=2, shuffle=True, seed=step, crash_plan=lambda: CrashAtStep(step)
    )
    cloud.check = lambda: running_alone(cloud)
    for _ in range(4):
        cloud.start()

    cloud.settle()

    assert cloud.crashes > 0
    assert set(cloud.states().values()) <= {"succeeded", "cancelled"}
    assert "succeeded" in cloud.states().values()
    assert cloud.holders() == []
    assert most_in_flight(store, cloud.run_ids) == 1
    assert store.slots().queued_keys(cloud.definition.name) == []


@pytest.mark.parametrize("step", range(1, 7))
def test_a_scheduled_start_that_crashes_at_any_write_and_is_repeated_is_decided_once(
    store: MongoStore, step: int
) -> None:
    cloud = Schedule(store, hourly("buffer_one"))
    first = cloud.start()
    with pytest.raises(InjectedCrash):
        start_run(CrashingStore(store, CrashAtStep(step)), cloud.definition, run_id="crashed", scheduled=True)
    cloud.start(run_id="crashed")  # the schedule's retry

    assert cloud.states() == {first: "running", "crashed": "queued"}
    cloud.settle()
    assert cloud.states() == {first: "succeeded", "crashed": "succeeded"}
    assert most_in_flight(store, cloud.run_ids) == 1


def test_the_reconciler_ends_a_second_waiting_run_whose_start_crashed_before_its_check(
    store: MongoStore,
) -> None:
    cloud = Schedule(store, hourly("buffer_one"))
    first = cloud.start()
    for run_id in ("second", "third"):  # each start dies once its run is inserted, queued
        with pytest.raises(InjectedCrash):
            start_run(
                CrashingStore(store, CrashAt("after insert_run")),
                cloud.definition,
                run_id=run_id,
                scheduled=True,
            )
        cloud.run_ids.append(run_id)
    assert cloud.states() == {first: "running", "second": "queued", "third": "queued"}

    Reconciler(store, cloud.dispatcher, stale_after=timedelta(hours=1)).reconcile_pass()

    assert cloud.states() == {first: "running", "second": "queued", "third": "cancelled"}
    cloud.settle()
    assert cloud.states() == {first: "succeeded", "second": "succeeded", "third": "cancelled"}


def test_the_reconciler_releases_the_slot_of_a_scheduled_run_whose_release_was_lost(
    store: MongoStore,
) -> None:
    cloud = Schedule(store, hourly("buffer_one"))
    first, second = cloud.start(), cloud.start()
    _end_with_a_crash(cloud, first)
    assert cloud.holders() == [first]

    report = Reconciler(store, cloud.dispatcher, stale_after=timedelta(hours=1)).reconcile_pass()

    assert (report.slots_released, report.queued_started) == (1, 1)
    assert cloud.states() == {first: "succeeded", second: "running"}


# -- the spec key ----------------------------------------------------------------------------------

SPEC = "workflow: hourly\nschedule: rate(1 hour)\nphases:\n  p:\n    jobs:\n      a: {}\n"


def test_schedule_overlap_loads_and_survives_the_run_snapshot(tmp_path: Path) -> None:
    spec = tmp_path / "w.yaml"
    spec.write_text(SPEC + "schedule_overlap: buffer_one\n")
    loaded = load_workflow(spec)
    assert loaded.schedule_overlap == "buffer_one"
    assert Workflow.from_document(loaded.to_document()).schedule_overlap == "buffer_one"
    spec.write_text(SPEC)
    assert load_workflow(spec).schedule_overlap == "skip"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            "schedule_overlap: buffer_all",
            r"\$\.schedule_overlap: unknown value 'buffer_all' \(did you mean 'buffer_one'\?\); expected one "
            "of: skip, buffer_one, allow, cancel_other",
        ),
        (
            "concurrency: {limit: 2}",
            r"\$\.concurrency: schedule_overlap skip \(the default\) cannot be combined with concurrency: "
            r"a run waits for one slot, not two\. Set schedule_overlap: allow",
        ),
        (
            "concurrency: {limit: 2}\nschedule_overlap: cancel_other",
            r"\$\.schedule_overlap: schedule_overlap cancel_other cannot be combined with concurrency",
        ),
    ],
)
def test_validate_explains_a_wrong_schedule_overlap(tmp_path: Path, keys: str, message: str) -> None:
    spec = tmp_path / "w.yaml"
    spec.write_text(SPEC + keys + "\n")
    with pytest.raises(SpecError, match=message):
        load_workflow(spec)


def test_schedule_overlap_without_a_schedule_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "w.yaml"
    spec.write_text("workflow: w\nschedule_overlap: skip\nphases:\n  p:\n    jobs:\n      a: {}\n")
    with pytest.raises(SpecError, match=r"schedule_overlap"):
        load_workflow(spec)


def test_concurrency_with_schedule_overlap_allow_governs_scheduled_runs_too(tmp_path: Path) -> None:
    spec = tmp_path / "w.yaml"
    spec.write_text(SPEC + "concurrency: {limit: 1}\non_limit: skip\nschedule_overlap: allow\n")
    loaded = load_workflow(spec)
    assert (loaded.concurrency, loaded.schedule_overlap) == (RunConcurrency(limit=1), "allow")


def test_the_starter_applies_schedule_overlap_to_the_starts_that_say_they_are_scheduled(
    store: MongoStore, mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "definition.json").write_text(json.dumps(hourly().to_document()))
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(tmp_path))
    monkeypatch.setenv("WORKFLOW_DEFINITION_FILE", "definition.json")
    monkeypatch.setenv("MONGODB_URI", mongo_uri)
    monkeypatch.setenv("MONGODB_DATABASE", store.settings.database)
    monkeypatch.setattr(starter, "_state", {})

    for hour in ("01", "02"):
        scheduled_time = f"2026-12-01T{hour}:00:00Z"
        event = {
            "run_id": f"h-{scheduled_time}",
            "input": {"scheduled_time": scheduled_time},
            "scheduled": True,
        }
        assert starter.handler(event, None)["created"] is True
    assert starter.handler({"run_id": "by-hand"}, None)["created"] is True

    states = {
        run_id: store.load_run(run_id)["status"]  # type: ignore[index]
        for run_id in ("h-2026-12-01T01:00:00Z", "h-2026-12-01T02:00:00Z", "by-hand")
    }
    assert states == {
        "h-2026-12-01T01:00:00Z": "running",
        "h-2026-12-01T02:00:00Z": "cancelled",
        "by-hand": "running",
    }
    assert (
        starter.handler({"run_id": "odd", "scheduled": "yes"}, None)["error"]
        == "scheduled is true or false, got 'yes'"
    )
