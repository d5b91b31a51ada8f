"""Answering an approval from the console, over HTTP on a real server: the run page lists the
approval jobs waiting for an answer when actions are allowed, and ``/api/run/approve`` and
``/api/run/reject`` record the answer as the CLI does, refused as every action is (read-only,
another origin) and when the job is not waiting. Nothing delivers the statuses here."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runtime.statuses import StatusName
from tests.test_console_api import Console, Response, console, read_only, store

__all__ = ["console", "read_only", "store"]  # the fixtures this module shares


def answer(console: Console, verb: str, job: str, body: bytes, **headers: str) -> Response:
    return console.act_on_job(verb, job, body, **headers)


def waiting_release(console: Console, state: str = "waiting") -> None:
    console.add_run("r", workflow="release")
    console.store.runs.update_one(
        {"_id": "r"},
        {"$set": {"jobs.build.state": "succeeded", "jobs.sign_off.state": state, "jobs.sign_off.attempt": 1}},
    )


def recorded(console: Console, status: StatusName) -> Any:
    return console.store.find_status("r", "only", "sign_off", status, 1)


def test_the_run_page_offers_the_waiting_approvals_and_says_what_they_ask(console: Console) -> None:
    waiting_release(console)

    run = console.request("/api/run?id=r").body

    assert run["approvals"] == ["sign_off"]
    [phase] = run["phases"]
    sign_off = next(job for job in phase["jobs"] if job["name"] == "sign_off")
    assert (sign_off["kind"], sign_off["message"], sign_off["state"]) == (
        "approval",
        "Ship the build?",
        "waiting",
    )


def test_approve_records_the_answer_with_its_output(console: Console) -> None:
    waiting_release(console)

    response = answer(console, "approve", "sign_off", json.dumps({"output": {"ticket": "CHG-1"}}).encode())

    assert (response.status, response.body) == (200, {"operation": "approved", "created": True})
    assert recorded(console, StatusName.APPROVED)["output"] == {"ticket": "CHG-1"}


def test_reject_records_the_answer_with_its_reason(console: Console) -> None:
    waiting_release(console)

    response = answer(console, "reject", "sign_off", json.dumps({"reason": "freeze"}).encode())

    assert (response.status, response.body["operation"]) == (200, "rejected")
    assert recorded(console, StatusName.REJECTED)["reason"] == "freeze"


def test_an_answer_to_a_job_that_is_not_waiting_is_a_409_and_records_nothing(console: Console) -> None:
    waiting_release(console, state="succeeded")

    response = answer(console, "reject", "sign_off", b"{}")

    assert response.status == 409
    assert "is not waiting for an answer: it was approved already" in response.body["error"]
    assert recorded(console, StatusName.REJECTED) is None
    assert console.request("/api/run?id=r").body["approvals"] == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the answer is not JSON"),
        (b"[1]", "the answer is a JSON object"),
        (b'{"reason": 7}', "the reason is text"),
    ],
)
def test_an_answer_that_is_not_a_json_object_is_a_400(console: Console, body: bytes, message: str) -> None:
    waiting_release(console)

    response = answer(console, "approve", "sign_off", body)

    assert response.status == 400
    assert message in response.body["error"]
    assert recorded(console, StatusName.APPROVED) is None


def test_answers_are_refused_as_every_action_is(read_only: Console, console: Console) -> None:
    waiting_release(read_only)

    from_read_only = answer(read_only, "approve", "sign_off", b"{}")
    from_elsewhere = answer(console, "approve", "sign_off", b"{}", Origin="http://evil.example")

    assert read_only.request("/api/run?id=r").body["approvals"] == []
    assert from_read_only.status == 403
    assert from_elsewhere.status == 403
    assert recorded(console, StatusName.APPROVED) is None
