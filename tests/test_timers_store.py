"""Timers and answers on a real MongoDB server, through the orchestrator: the sweep fires a due
timer once however often it runs, ``wakeAt`` keeps the earliest time under concurrent
decisions, answers are refused clearly when the job is not waiting, and the starter function
takes ``approve`` / ``reject``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pymongo
import pytest

from cdk_app.local.faults import CrashAtStep, CrashingDispatcher, InjectedCrash
from runtime import limits
from runtime.clock import utcnow
from runtime.definition.model import HANDLERS_PHASE, Approval, Job, Phase, RetryPolicy, Workflow
from runtime.documents.run import WAKE_AT, StatusEvent
from runtime.engine.timers import timer_event
from runtime.errors import RunError
from runtime.service.approvals import answer_approval
from runtime.service.orchestrator import Orchestrator
from runtime.service.reconciler import unrecorded_statuses
from runtime.service.runs import start_run
from runtime.service.timers import fire_due_timers, fire_timers_until
from runtime.statuses import JobState, RunState, StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import RecordingDispatcher
from tests.test_operations import starter_of

RELEASE = Workflow(
    name="release",
    phases=(
        Phase(
            name="p",
            jobs=(
                Job(name="sign_off", phase="p", approval=Approval(timeout=600, message="Ship it?")),
                Job(name="ship", phase="p", after=("sign_off",), retry=RetryPolicy(max=2, delay=30)),
            ),
        ),
    ),
    timeout=3600,
)


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def settle(store: MongoStore, orchestrator: Orchestrator, run_id: str) -> None:
    """Apply every status of the run the orchestrator acts on, as the trigger would deliver them."""
    for event in store.read_statuses(run_id):
        orchestrator.apply(event)


def started(store: MongoStore) -> tuple[Orchestrator, RecordingDispatcher, str]:
    dispatcher = RecordingDispatcher()
    orchestrator = Orchestrator(store=store, dispatcher=dispatcher, redispatch_after=timedelta(0))
    run_id = start_run(store, RELEASE, run_id="rel-1").run_id
    settle(store, orchestrator, run_id)
    return orchestrator, dispatcher, run_id


def test_the_start_records_the_deadline_and_the_approval_as_timers_and_wakes_at_the_earliest(
    store: MongoStore,
) -> None:
    _, _, run_id = started(store)

    run = store.read_run(run_id)
    document = store.load_run(run_id)
    assert run is not None
    assert document is not None
    assert run.jobs["sign_off"].state == JobState.WAITING
    assert run.deadline is not None
    assert run.jobs["sign_off"].due_at is not None
    assert run.jobs["sign_off"].due_at < run.deadline
    assert abs(
        document[WAKE_AT].replace(tzinfo=run.deadline.tzinfo) - run.jobs["sign_off"].due_at
    ) < timedelta(milliseconds=1)
    assert [event.status for event in store.read_statuses(run_id)][-1] == StatusName.APPROVAL_REQUESTED


def test_a_due_timer_fires_once_however_often_the_sweep_runs(store: MongoStore) -> None:
    orchestrator, _, run_id = started(store)
    later = utcnow() + timedelta(seconds=601)

    first = fire_due_timers(store, later)
    second = fire_due_timers(store, later)
    settle(store, orchestrator, run_id)
    third = fire_due_timers(store, later)

    assert (first, second, third) == (1, 0, 0)
    run = store.read_run(run_id)
    assert run is not None
    assert run.state == RunState.FAILED
    assert run.error == "job 'sign_off': approval timed out"
    fired = [event for event in store.read_statuses(run_id) if event.status == StatusName.TIMER_FIRED]
    assert [(event.job, event.attempt) for event in fired] == [("sign_off", 1)]


def test_the_sweep_moves_wake_at_on_to_the_next_timer_and_finds_nothing_before_it(store: MongoStore) -> None:
    _, _, run_id = started(store)
    fire_due_timers(store, utcnow() + timedelta(seconds=601))

    run = store.read_run(run_id)
    assert run is not None
    assert store.next_wake("release") == run.deadline
    assert store.runs_due(utcnow() + timedelta(seconds=601), 10) == []


LOCKED = Workflow(
    name="locked",
    phases=(Phase(name="p", jobs=(Job(name="charge", phase="p", retry=RetryPolicy(max=0)),)),),
    on_failure=Phase(name=HANDLERS_PHASE, jobs=(Job(name="release_lock", phase=HANDLERS_PHASE),)),
    timeout=60,
)


def test_a_deadline_passing_while_the_handlers_run_is_not_fired_and_they_run_to_their_end(
    store: MongoStore,
) -> None:
    dispatcher = RecordingDispatcher()
    orchestrator = Orchestrator(store=store, dispatcher=dispatcher, redispatch_after=timedelta(0))
    run_id = start_run(store, LOCKED, run_id="locked-1").run_id
    settle(store, orchestrator, run_id)
    store.record_status(
        StatusEvent(
            run_id=run_id,
            workflow="locked",
            status=StatusName.FAILED,
            phase="p",
            job="charge",
            attempt=1,
            error="no card",
        )
    )
    running = store.read_run(run_id)
    assert running is not None
    # A sweep that read the run before the failure was applied: the deadline fires behind it.
    store.record_status(timer_event(running, None))
    settle(store, orchestrator, run_id)
    past_the_deadline = utcnow() + timedelta(seconds=61)

    fired = [fire_due_timers(store, past_the_deadline) for _ in range(2)]
    settle(store, orchestrator, run_id)

    assert fired == [0, 0]
    assert store.runs_due(past_the_deadline, 10) == []
    handling = store.read_run(run_id)
    assert handling is not None
    assert (handling.state, handling.jobs["release_lock"].state) == (RunState.RUNNING, JobState.DISPATCHED)
    assert unrecorded_statuses(handling, store.read_statuses(run_id)) == []  # nothing for the reconciler
    store.record_status(
        StatusEvent(
            run_id=run_id,
            workflow="locked",
            status=StatusName.SUCCESS,
            phase=HANDLERS_PHASE,
            job="release_lock",
            attempt=1,
        )
    )
    settle(store, orchestrator, run_id)
    ended = store.read_run(run_id)
    assert ended is not None
    assert (ended.state, ended.error) == (RunState.FAILED, "job 'charge' failed after 1 attempt(s): no card")
    assert ended.jobs["release_lock"].state == JobState.SUCCEEDED


def test_the_minute_loop_sleeps_until_a_timer_due_within_the_window_and_fires_it(store: MongoStore) -> None:
    orchestrator, _, run_id = started(store)
    base = utcnow()
    clock = [base]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += timedelta(seconds=seconds)

    fired = fire_timers_until(
        store, "release", base + timedelta(seconds=700), clock=lambda: clock[0], sleep=sleep
    )

    assert fired == 1
    assert len(slept) == 1
    assert 599 < slept[0] <= 600  # until the approval's timeout, then back: the deadline is later
    assert fire_timers_until(store, "release", base, clock=utcnow, sleep=sleep) == 0


def test_an_approval_answered_succeeds_and_a_second_answer_is_refused(store: MongoStore) -> None:
    orchestrator, dispatcher, run_id = started(store)

    receipt = answer_approval(store, run_id, "sign_off", approve=True, output={"by": "ana"})
    settle(store, orchestrator, run_id)

    assert receipt.created
    run = store.read_run(run_id)
    assert run is not None
    assert run.jobs["sign_off"].output == {"by": "ana"}
    assert [(event.job, event.attempt) for event in dispatcher.drain()] == [("ship", 1)]
    with pytest.raises(
        RunError, match="'sign_off' of run rel-1 is not waiting for an answer: it was approved"
    ):
        answer_approval(store, run_id, "sign_off", approve=False)


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ("ship", "job 'ship' of run rel-1 is not an approval job"),
        ("nope", "run rel-1 has no job 'nope'"),
    ],
)
def test_an_answer_to_a_job_that_cannot_take_one_is_refused(
    store: MongoStore, job: str, message: str
) -> None:
    started(store)

    with pytest.raises(RunError, match=message):
        answer_approval(store, "rel-1", job, approve=True)


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({"by": {"ana.silva": True}}, r"the key 'ana.silva' at \$.by is not a MongoDB field name"),
        ({"$by": "ana"}, r"the key '\$by' at \$ is not a MongoDB field name"),
        ({"ticket": [1, 2**60]}, r"the integer at \$.ticket\[1\] is beyond"),
        ({"log": "x" * limits.OUTPUT_INLINE_MAX_BYTES}, r"bytes of JSON; an answer carries at most"),
        ({"ratio": float("nan")}, r"is not JSON"),
    ],
)
def test_an_answer_whose_output_would_not_travel_as_it_is_is_refused_and_nothing_recorded(
    store: MongoStore, output: Any, message: str
) -> None:
    # The status goes through the Atlas trigger's JavaScript and an EventBridge event of 256 KB
    # at most, and its output into the run document: the local server takes what they would not.
    _, _, run_id = started(store)

    with pytest.raises(RunError, match=message):
        answer_approval(store, run_id, "sign_off", approve=True, output=output)

    assert [entry.status for entry in store.read_statuses(run_id)] == [
        StatusName.WORKFLOW_STARTED,
        StatusName.APPROVAL_REQUESTED,
    ]


def test_an_answer_to_a_run_of_another_workflow_or_no_run_is_refused(store: MongoStore) -> None:
    started(store)

    with pytest.raises(RunError, match="is a run of workflow 'release', not 'other'"):
        answer_approval(store, "rel-1", "sign_off", approve=True, workflow="other")
    with pytest.raises(RunError, match="no run 'nope'"):
        answer_approval(store, "nope", "sign_off", approve=True)


@pytest.fixture
def starter_handler(
    store: MongoStore, mongo_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[object], dict[str, Any]]:
    """The starter function of ``RELEASE``, as Lambda runs it."""
    return starter_of(RELEASE, store, mongo_uri, tmp_path, monkeypatch)


def test_the_starter_function_rejects_an_approval(
    store: MongoStore, starter_handler: Callable[[object], dict[str, Any]]
) -> None:
    orchestrator, _, run_id = started(store)

    answer = starter_handler({"action": "reject", "run_id": run_id, "job": "sign_off", "reason": "freeze"})
    settle(store, orchestrator, run_id)

    assert answer == {"run_id": run_id, "action": "reject", "created": True}
    run = store.read_run(run_id)
    assert run is not None
    assert run.error == "job 'sign_off': rejected: freeze"


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"action": "approve", "run_id": "rel-1"}, "approve needs the job"),
        (
            {"action": "approve", "run_id": "rel-1", "job": "sign_off", "reason": "x"},
            "only a cancel or a reject",
        ),
        ({"action": "reject", "run_id": "rel-1", "job": "sign_off", "output": {}}, "only an approve takes"),
        ({"action": "approve", "run_id": "rel-1", "job": "ship"}, "not an approval job"),
    ],
)
def test_the_starter_function_answers_a_bad_answer_with_an_error(
    store: MongoStore, starter_handler: Callable[[object], dict[str, Any]], request_: object, error: str
) -> None:
    started(store)

    answer = starter_handler(request_)

    assert set(answer) == {"error", "error_type"}
    assert error in answer["error"]


def test_a_delayed_retry_whose_dispatch_a_crash_cut_short_is_sent_when_its_timer_is_redelivered(
    store: MongoStore,
) -> None:
    # GIVEN ship failed once and waits 30 s for its retry
    orchestrator, dispatcher, run_id = started(store)
    answer_approval(store, run_id, "sign_off", approve=True)
    settle(store, orchestrator, run_id)
    store.record_status(
        StatusEvent(
            run_id=run_id,
            workflow="release",
            status=StatusName.FAILED,
            phase="p",
            job="ship",
            attempt=1,
            error="RuntimeError: flaky",
        )
    )
    settle(store, orchestrator, run_id)
    fire_due_timers(store, utcnow() + timedelta(seconds=31))
    timer = next(event for event in store.read_statuses(run_id) if event.status == StatusName.TIMER_FIRED)
    # WHEN the orchestrator writes the timer's decision and dies before it invokes the attempt
    crashing = Orchestrator(
        store=store,
        dispatcher=CrashingDispatcher(dispatcher, CrashAtStep(1)),
        redispatch_after=timedelta(0),
    )
    with pytest.raises(InjectedCrash, match="before dispatching ship#2"):
        crashing.apply(timer)
    dispatcher.drain()
    # THEN the redelivered timer sends the attempt
    outcome = orchestrator.apply(timer)
    assert [(job.job, job.attempt) for job in dispatcher.drain()] == [("ship", 2)]
    assert outcome.action == "advanced"
