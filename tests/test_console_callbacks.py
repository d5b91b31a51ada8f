"""Completing a callback job from the console, over HTTP on a real server: the run page shows the
token of a callback job waiting without code and lists it among what may be completed when
actions are allowed; ``/api/run/complete`` records the completion (an output, or an error) for the
waiting attempt as ``complete TOKEN`` does, refused as every action is (read-only) and for a job
that does not wait for its callback. Nothing delivers the statuses here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cdk_app.console.server import serving_console
from runtime.documents.callbacks import callback_token
from runtime.documents.signatures import StatusKeys
from runtime.service.runs import start_run
from runtime.statuses import StatusName
from runtime.store.connection import cached_client
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import Driver
from tests.test_callback_tokens import batch
from tests.test_console_api import Console, Response


@pytest.fixture
def store(mongo_uri: str, store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(cached_client(mongo_uri), store_settings, StatusKeys.generate())
    store.ensure_indexes()
    Driver(store, batch()).settle(start_run(store, batch(), run_id="r").run_id)
    return store


def _console(store: MongoStore, allow_actions: bool) -> Iterator[Console]:
    with serving_console(store, "127.0.0.1", 0, allow_actions) as url:
        yield Console(url.rstrip("/"), store)


@pytest.fixture
def console(store: MongoStore) -> Iterator[Console]:
    yield from _console(store, allow_actions=True)


@pytest.fixture
def read_only(store: MongoStore) -> Iterator[Console]:
    yield from _console(store, allow_actions=False)


def complete(console: Console, job: str, body: object) -> Response:
    return console.act_on_job("complete", job, body)


def test_the_run_page_shows_the_waiting_callback_job_and_its_token(console: Console) -> None:
    run = console.request("/api/run?id=r").body

    keys = console.store.keys
    assert keys is not None
    assert run["callbacks"] == ["export"]
    assert run["callback_tokens"] == {"export": callback_token(keys, "reports", "r", "export", 1)}
    export = next(job for job in run["phases"][0]["jobs"] if job["name"] == "export")
    assert export["kind"] == "callback"


def test_a_read_only_console_offers_no_completion_and_refuses_one(read_only: Console) -> None:
    assert read_only.request("/api/run?id=r").body["callbacks"] == []
    assert complete(read_only, "export", {"output": 1}).status == 403
    assert read_only.store.find_status("r", "p", "export", StatusName.CALLBACK_COMPLETED, 1) is None


def test_a_completion_from_the_console_is_recorded_for_the_waiting_attempt(console: Console) -> None:
    not_waiting = complete(console, "publish", {"output": 1})
    done = complete(console, "export", {"output": {"rows": 3}, "id": "from-console"})
    again = complete(console, "export", {"error": "changed my mind"})

    assert not_waiting.status == 409
    assert "does not wait for its callback" in not_waiting.body["error"]
    assert done.status == 200, done.body
    assert (done.body["operation"], done.body["attempt"], done.body["id"]) == ("complete", 1, "from-console")
    recorded = console.store.find_status("r", "p", "export", StatusName.CALLBACK_COMPLETED, 1)
    assert recorded is not None
    assert (recorded["output"], recorded["requestId"]) == ({"rows": 3}, "from-console")
    assert again.status == 409
    assert "completed already, by completion from-console" in again.body["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the completion is not JSON"),
        ([1], "the completion is a JSON object"),
        ({"error": 7}, "the completion is a JSON object"),
    ],
)
def test_a_completion_not_a_json_object_is_a_400(console: Console, body: object, message: str) -> None:
    response = complete(console, "export", body)

    assert response.status == 400
    assert message in response.body["error"]
    assert console.store.find_status("r", "p", "export", StatusName.CALLBACK_COMPLETED, 1) is None
