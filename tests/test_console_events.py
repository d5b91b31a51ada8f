"""Sending an event from the console, over HTTP on a real server: the run page shows a waiting
event job's event name and match, lists it among what may be sent when actions are allowed, and
``/api/run/event`` records the event for that run as ``send-event --run`` does, refused as every
action is (read-only) and for a job that is no event job. Nothing delivers the statuses here."""

from __future__ import annotations

import pytest

from runtime.statuses import StatusName
from tests.test_console_api import Console, Response, console, read_only, store

__all__ = ["console", "read_only", "store"]  # the fixtures this module shares


def send(console: Console, job: str, body: object) -> Response:
    return console.act_on_job("event", job, body)


def waiting_payment(console: Console) -> None:
    console.add_run("r", workflow="payment", input={"order_id": "o-1"})
    console.store.runs.update_one(
        {"_id": "r"}, {"$set": {"jobs.paid.state": "waiting", "jobs.paid.attempt": 1}}
    )


def test_the_run_page_shows_a_waiting_event_job_and_what_it_matches(console: Console) -> None:
    waiting_payment(console)

    run = console.request("/api/run?id=r").body

    assert run["events"] == ["paid"]
    paid = next(job for job in run["phases"][0]["jobs"] if job["name"] == "paid")
    assert (paid["kind"], paid["event"]) == (
        "event",
        {"name": "payment_settled", "match": "event.order_id == input.order_id"},
    )


def test_a_read_only_console_offers_no_event_to_send_and_refuses_one(read_only: Console) -> None:
    waiting_payment(read_only)

    assert read_only.request("/api/run?id=r").body["events"] == []
    assert send(read_only, "paid", {"payload": {"order_id": "o-1"}}).status == 403
    assert read_only.store.find_status("r", "only", "paid", StatusName.EVENT_RECEIVED, 1) is None


def test_an_event_sent_from_the_console_is_recorded_for_the_waiting_attempt(console: Console) -> None:
    waiting_payment(console)

    other = send(console, "paid", {"payload": {"order_id": "o-2"}})
    sent = send(console, "paid", {"payload": {"order_id": "o-1"}, "id": "from-console"})
    not_event = send(console, "ship", {"payload": {}})

    assert (other.status, other.body["delivered"]) == (200, [])  # another order's: kept only
    assert sent.status == 200, sent.body
    assert sent.body["delivered"] == [{"run_id": "r", "job": "paid", "attempt": 1}]
    recorded = console.store.find_status("r", "only", "paid", StatusName.EVENT_RECEIVED, 1)
    assert recorded is not None
    assert (recorded["output"], recorded["requestId"]) == ({"order_id": "o-1"}, "from-console")
    assert not_event.status == 409
    assert "no event job 'ship'" in not_event.body["error"]


@pytest.mark.parametrize(
    ("body", "message"), [(b"{not json", "the event is not JSON"), ([1], "the event is a JSON object")]
)
def test_an_event_not_a_json_object_is_a_400(console: Console, body: object, message: str) -> None:
    waiting_payment(console)

    response = send(console, "paid", body)

    assert response.status == 400
    assert message in response.body["error"]
    assert console.store.find_status("r", "only", "paid", StatusName.EVENT_RECEIVED, 1) is None
