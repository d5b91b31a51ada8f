"""``runtime.client``, what a script imports: it starts and operates runs on a connection string
as the CLI does, through the same use cases."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pymongo
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from runtime.client import (
    Client,
    InputRefused,
    OperationRefused,
    PagePosition,
    RunError,
    RunNotFound,
    StoreUnavailable,
    list_runs,
    open_store,
    request_cancel,
    run_history,
    start_run,
)
from runtime.clock import time_from
from runtime.statuses import RunState, StatusName
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from runtime.store.status_keys import local_keys
from tests.cli_harness import cli
from tests.engine_harness import CATCH_THE_FISH, Driver
from tests.test_operations import starter_of


def test_a_script_starts_lists_and_cancels_a_run(mongo_uri: str, store_settings: StoreSettings) -> None:
    # GIVEN a store opened from the connection string alone
    store = open_store(mongo_uri, database=store_settings.database)

    # WHEN a script starts a run, then asks for it to be cancelled
    started = start_run(store, CATCH_THE_FISH, run_id="scripted-1", input={"lake": "Ontario"})
    receipt = request_cancel(store, started.run_id, "changed plans")

    # THEN the run is listed, and its history holds the start and the request, in that order
    assert started.created
    assert receipt.created
    assert [(run.run_id, run.status) for run in list_runs(store)] == [("scripted-1", RunState.RUNNING)]
    assert [entry.status for entry in run_history(store, "scripted-1")] == [
        StatusName.WORKFLOW_STARTED,
        StatusName.CANCEL_REQUESTED,
    ]


def test_the_store_it_opens_has_the_indexes_the_functions_rely_on(
    mongo_uri: str, store_settings: StoreSettings
) -> None:
    store = open_store(mongo_uri, database=store_settings.database)
    assert "running_by_wake" in store.runs.index_information()


# -- Client ------------------------------------------------------------------------------------

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
FISH_INPUT = {"lake": "Ontario"}


@pytest.fixture
def client(mongo_uri: str, store_settings: StoreSettings, monkeypatch: pytest.MonkeyPatch) -> Client:
    monkeypatch.delenv("WORKFLOWS_STATUS_KEY", raising=False)
    return Client(mongo_uri, workflows_dir=WORKFLOWS, database=store_settings.database)


def _driver(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> Driver:
    """The deployed hops (trigger, rules, orchestrator, job functions) played in this thread."""
    return Driver(MongoStore(mongo_client, store_settings), CATCH_THE_FISH)


def test_the_client_starts_a_run_of_a_spec_in_its_folder_idempotently_and_reads_it(client: Client) -> None:
    started = client.start("catch_the_fish", FISH_INPUT, run_id="fish-1")
    again = client.start("catch_the_fish", FISH_INPUT, run_id="fish-1")

    assert (started.created, again.created) == (True, False)
    run = client.get("fish-1")
    assert (run.run_id, run.workflow, run.status) == ("fish-1", "catch_the_fish", "running")
    assert run.job("buy_fishing_gear").status in ("pending", "running")
    assert [summary.run_id for summary in client.list("catch_the_fish")] == ["fish-1"]
    assert client.list("nightly_report") == []


def test_the_client_operates_a_run_and_the_engine_applies_what_it_signed(
    client: Client, mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings
) -> None:
    # The orchestrator here checks signatures: an unsigned cancel would be rejected, not applied.
    keys = local_keys(MongoStore(mongo_client, store_settings))
    driver = Driver(MongoStore(mongo_client, store_settings, keys=keys), CATCH_THE_FISH)
    client.start("catch_the_fish", FISH_INPUT, run_id="fish-2")

    receipt = client.cancel("fish-2", "storm")
    driver.settle("fish-2")

    assert receipt.created
    ended = client.wait("fish-2", timeout=5)
    assert ended.status == "cancelled"
    assert [entry.status for entry in client.history("fish-2")][:2] == [
        "workflow_started",
        "cancel_requested",
    ]
    assert client.redrive("fish-2").created


def test_watch_yields_the_run_as_it_changes_until_it_has_ended(
    client: Client, mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings
) -> None:
    client.start("catch_the_fish", FISH_INPUT, run_id="fish-3")
    watching = client.watch("fish-3", poll=0.01)

    first = next(watching)
    _driver(mongo_client, store_settings).settle("fish-3")
    rest = list(watching)

    assert first.status == "running"
    assert [report.status for report in rest] == ["succeeded"]


def test_the_client_gives_the_same_object_as_status_json(
    client: Client, mongo_uri: str, mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings
) -> None:
    client.start("catch_the_fish", FISH_INPUT, run_id="fish-4")
    _driver(mongo_client, store_settings).settle("fish-4")

    shown = cli("status", "fish-4", "--json", "--mongo-uri", mongo_uri, "--database", store_settings.database)

    assert shown.exit_code == 0, shown.stderr
    assert shown.report == client.get("fish-4").to_json()
    assert shown.report["status"] == "succeeded"


@pytest.mark.parametrize(
    ("verb", "error", "message"),
    [
        (lambda c: c.get("nope"), RunNotFound, "no run 'nope'"),
        (lambda c: c.cancel("nope"), RunNotFound, "no run 'nope'"),
        (
            lambda c: c.start("catch_the_fsh"),
            RunError,
            r"no spec of workflow 'catch_the_fsh'.*catch_the_fish",
        ),
        (lambda c: c.list(status="done"), RunError, "unknown run status 'done'"),
    ],
    ids=["get-unknown", "cancel-unknown", "unknown-workflow", "bad-status"],
)
def test_the_client_refuses_with_typed_errors(
    client: Client, verb: Callable[[Client], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        verb(client)


def test_an_input_the_schema_refuses_is_an_input_refused_with_each_problem(
    mongo_uri: str, store_settings: StoreSettings, tmp_path: Path
) -> None:
    (tmp_path / "orders.yaml").write_text(
        "workflow: orders\ninput_schema: {type: object, required: [order_id], properties: {order_id: "
        "{type: string}}}\nphases: {p: {jobs: {ship: {}}}}\n"
    )
    client = Client(mongo_uri, workflows_dir=tmp_path, database=store_settings.database)

    with pytest.raises(InputRefused) as refused:
        client.start("orders", {"order_id": 7})

    assert refused.value.problems == ["$.order_id: 7 is not of type 'string'"]
    assert client.list() == [], "nothing was written"


def test_an_operation_the_run_cannot_take_is_refused_as_such(
    client: Client, mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings
) -> None:
    client.start("catch_the_fish", FISH_INPUT, run_id="fish-5")
    _driver(mongo_client, store_settings).settle("fish-5")

    with pytest.raises(OperationRefused, match="has already ended"):
        client.cancel("fish-5")
    with pytest.raises(OperationRefused, match="is not an approval job"):
        client.approve("fish-5", "go_home")


def test_no_database_is_a_store_unavailable_not_a_driver_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONGODB_URI", raising=False)
    with pytest.raises(StoreUnavailable, match="no MongoDB given"):
        Client.local()
    with pytest.raises(StoreUnavailable, match="cannot reach MongoDB"):
        Client("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200")


# -- Client.aws, through the real starter handler behind a stubbed Lambda client --------------


class _StarterThroughStubber:
    """A Lambda client stubbed with botocore's Stubber whose answers are the real starter
    handler's to the very payload the client sends (checked by the stub's expected params)."""

    def __init__(self, starter: Callable[[object], dict[str, Any]]) -> None:
        self.starter = starter
        self.lambda_client = boto3.client("lambda", region_name="eu-west-1")
        self.stubber = Stubber(self.lambda_client)

    def expect(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        answer = json.dumps(self.starter(json.loads(body))).encode()
        self.stubber.add_response(
            "invoke",
            {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(answer), len(answer))},
            {"FunctionName": "catch_the_fish-starter", "InvocationType": "RequestResponse", "Payload": body},
        )


@pytest.fixture
def through_starter(
    mongo_client: pymongo.MongoClient[dict],
    store_settings: StoreSettings,
    mongo_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> _StarterThroughStubber:
    store = MongoStore(mongo_client, store_settings)
    return _StarterThroughStubber(starter_of(CATCH_THE_FISH, store, mongo_uri, tmp_path, monkeypatch))


def test_the_aws_client_starts_reads_and_operates_through_the_starter(
    through_starter: _StarterThroughStubber,
    mongo_client: pymongo.MongoClient[dict],
    store_settings: StoreSettings,
) -> None:
    aws = Client.aws(workflow="catch_the_fish", lambda_client=through_starter.lambda_client)
    with through_starter.stubber:
        through_starter.expect({"input": FISH_INPUT, "run_id": "cloud-1"})
        started = aws.start("catch_the_fish", FISH_INPUT, run_id="cloud-1")
        through_starter.expect({"action": "get", "run_id": "cloud-1"})
        running = aws.get("cloud-1")
        through_starter.expect({"action": "list", "limit": 50, "status": "running"})
        listed = aws.list(status="running")
        through_starter.expect({"action": "cancel", "run_id": "cloud-1", "reason": "storm"})
        cancelled = aws.cancel("cloud-1", "storm")
        through_starter.expect({"action": "history", "run_id": "cloud-1"})
        history = aws.history("cloud-1")
        through_starter.stubber.assert_no_pending_responses()

    assert started.created
    local = Client.local(_uri(mongo_client), database=store_settings.database)
    assert running.to_json() == local.get("cloud-1").to_json()
    assert [run.run_id for run in listed] == ["cloud-1"]
    assert cancelled.created
    assert [entry.status for entry in history] == ["workflow_started", "cancel_requested"]


def test_the_aws_client_raises_the_starters_refusals_typed(through_starter: _StarterThroughStubber) -> None:
    aws = Client.aws(workflow="catch_the_fish", lambda_client=through_starter.lambda_client)
    with through_starter.stubber:
        through_starter.expect({"action": "get", "run_id": "nope"})
        with pytest.raises(RunNotFound, match="no run 'nope'"):
            aws.get("nope")
    with pytest.raises(RunError, match=r"say which, with Client.aws\(workflow=...\)"):
        Client.aws(lambda_client=through_starter.lambda_client).get("cloud-1")


def _uri(mongo_client: pymongo.MongoClient[dict]) -> str:
    host, port = mongo_client.address or ("127.0.0.1", 27017)
    return f"mongodb://{host}:{port}"


def test_pages_go_through_every_run_once_newest_first_even_when_runs_share_a_time(client: Client) -> None:
    # Five runs created in the same millisecond, between runs created before and after them: a
    # page that ends inside the five must not show one twice, nor skip one.
    moments = [datetime(2026, 12, 7, 9, minute, tzinfo=UTC) for minute in (1, 2, 3, 3, 3, 3, 3, 4)]
    for number, moment in enumerate(moments):
        with time_from(_at(moment)):
            client.start("catch_the_fish", FISH_INPUT, run_id=f"fish-{number}")

    pages = list(client.pages("catch_the_fish", page_size=2))

    shown = [run.run_id for page in pages for run in page]
    assert sorted(shown) == sorted(f"fish-{number}" for number in range(8))
    assert len(shown) == 8, "none twice"
    assert [len(page) for page in pages] == [2, 2, 2, 2]
    times = [run.created_at for page in pages for run in page if run.created_at is not None]
    assert len(times) == 8
    assert times == sorted(times, reverse=True)
    assert (
        client.list("catch_the_fish", limit=3, after=PagePosition.after(pages[0])) == pages[1] + pages[2][:1]
    )


def test_the_starter_lists_the_page_after_a_position_and_refuses_a_bad_one(
    through_starter: _StarterThroughStubber, client: Client
) -> None:
    for number, minute in enumerate((1, 2, 3)):
        with time_from(_at(datetime(2026, 12, 7, 9, minute, tzinfo=UTC))):
            client.start("catch_the_fish", FISH_INPUT, run_id=f"paged-{number}")
    newest = client.list("catch_the_fish", limit=1)
    after = PagePosition.after(newest)
    assert after is not None

    answer = through_starter.starter({"action": "list", "limit": 1, "after": after.to_json()})
    refused = through_starter.starter({"action": "list", "after": {"run_ids": []}})

    assert [run["run_id"] for run in answer["runs"]] == ["paged-1"]
    assert refused["error_type"] == "EventError"
    assert "after is a page position" in refused["error"]


def _at(moment: datetime) -> Callable[[], datetime]:
    """A clock that always reads ``moment``."""
    return lambda: moment


def test_the_aws_client_makes_its_own_lambda_client_without_sdk_retries() -> None:
    # A start without a run id that the SDK retried after the starter ran would start two runs.
    aws = Client.aws(region="eu-west-1", workflow="catch_the_fish")

    invoker = aws._backend.starter  # type: ignore[attr-defined]
    assert invoker.client.meta.config.retries["total_max_attempts"] == 1
