"""The dev server plays the workflows' schedules (``cdk_app.local.schedules``): cron minutes in
the spec's ``schedule_timezone``, rates, and a run per firing whose id and input carry
``scheduled_time`` as the deployed schedule's ``<aws.scheduler.scheduled-time>`` does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pymongo
import pytest

from cdk_app.local.schedules import ScheduleClock
from runtime.engine.schedule import firings, parse_cron
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.cdk_fixtures import catch_the_fish

NINE_IN_BERLIN = catch_the_fish(schedule="cron(0 9 ? * MON-FRI *)", schedule_timezone="Europe/Berlin")


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def _day(year: int, month: int, day: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, day, tzinfo=UTC)
    return start, start + timedelta(days=1)


@pytest.mark.parametrize(
    ("day", "fires_at"),
    [
        ((2026, 12, 7), datetime(2026, 12, 7, 8, 0, tzinfo=UTC)),  # a Monday in winter: UTC+1
        ((2026, 7, 6), datetime(2026, 7, 6, 7, 0, tzinfo=UTC)),  # a Monday in summer: UTC+2
    ],
    ids=["winter", "summer"],
)
def test_a_cron_fires_at_its_local_time_in_its_time_zone(
    day: tuple[int, int, int], fires_at: datetime
) -> None:
    after, until = _day(*day)
    assert firings(NINE_IN_BERLIN, after, until, after) == [fires_at]


def test_a_cron_does_not_fire_on_days_its_day_of_week_leaves_out() -> None:
    after, until = _day(2026, 12, 6)  # a Sunday
    assert firings(NINE_IN_BERLIN, after, until, after) == []


def test_a_rate_fires_every_period_from_when_it_was_first_seen() -> None:
    anchor = datetime(2026, 12, 7, 10, 0, 30, tzinfo=UTC)
    workflow = catch_the_fish(schedule="rate(20 minutes)")
    times = firings(workflow, anchor + timedelta(minutes=30), anchor + timedelta(hours=1), anchor)
    assert times == [anchor + timedelta(minutes=40), anchor + timedelta(hours=1)]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("cron(0 9 L * ? *)", "'L': L, W and # are played only by EventBridge Scheduler, not locally"),
        ("cron(0 9 ? * 2#1 *)", "'2#1': L, W and # are played only by EventBridge Scheduler, not locally"),
        ("cron(61 9 * * ? *)", "'61' is outside 0-59"),
    ],
)
def test_what_the_dev_server_cannot_play_is_said(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_cron(expression)


def test_each_firing_starts_a_run_with_its_scheduled_time_in_its_id_and_input(store: MongoStore) -> None:
    workflow = catch_the_fish(
        schedule="cron(0/30 * * * ? *)", schedule_input={"mode": "fast"}, schedule_timezone="Asia/Kolkata"
    )
    said: list[str] = []
    clock = ScheduleClock(store, said.append)
    start = datetime(2026, 12, 7, 9, 10, tzinfo=UTC)

    assert clock.tick({workflow.name: workflow}, start) == [], (
        "what was due before it looked is not made up for"
    )
    started = clock.tick({workflow.name: workflow}, start + timedelta(hours=1))

    assert started == ["catch_the_fish-2026-12-07T09:30:00Z", "catch_the_fish-2026-12-07T10:00:00Z"]
    document = store.load_run(started[0])
    assert document is not None
    assert document["input"] == {"mode": "fast", "scheduled_time": "2026-12-07T09:30:00Z"}
    assert clock.tick({workflow.name: workflow}, start + timedelta(hours=1)) == []
    assert said == []


def test_a_schedule_it_cannot_play_is_said_once_and_left_alone(store: MongoStore) -> None:
    workflow = catch_the_fish(schedule="cron(0 9 L * ? *)")
    said: list[str] = []
    clock = ScheduleClock(store, said.append)
    start = datetime(2026, 12, 31, 8, 0, tzinfo=UTC)

    for minutes in (0, 90, 180):
        assert clock.tick({workflow.name: workflow}, start + timedelta(minutes=minutes)) == []

    assert said == [
        "schedule of catch_the_fish not played locally: 'L': L, W and # are played only by EventBridge "
        "Scheduler, not locally"
    ]
