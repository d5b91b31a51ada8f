"""``send-event`` end to end through ``python -m cdk_app``: an event sent from a second process
while the dev server runs (before the run starts, and for another order), its output for people
and scripts, and its refusals with their exit codes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from cdk_app.errors import EXIT_PROBLEMS, EXIT_USAGE
from tests.cli_harness import cli
from tests.test_dev_server import WAIT, dev_server, wait_until

SPECS = Path(__file__).resolve().parent / "specs" / "time"


@pytest.fixture
def store(mongo_uri: str, mongo_client: pymongo.MongoClient[dict]) -> Iterator[list[str]]:
    database = f"events_{uuid.uuid4().hex[:12]}"
    yield ["--mongo-uri", mongo_uri, "--database", database]
    mongo_client.drop_database(database)


def test_a_payment_webhook_sent_before_and_while_the_dev_server_runs_the_order(tmp_path: Path) -> None:
    with dev_server(tmp_path, "--data", "data", "--workflows", str(SPECS)) as dev:
        early = dev.cli(
            "send-event", "payment", "payment_settled", "--payload", '{"order_id": "o-7", "paid": 12}'
        )
        first = dev.cli("start", str(SPECS / "payment.yaml"), "--input", '{"order_id": "o-7"}').stdout.strip()
        second = dev.cli(
            "start", str(SPECS / "payment.yaml"), "--input", '{"order_id": "o-8"}'
        ).stdout.strip()
        done = dev.cli("status", first, "--wait", WAIT, "--json")
        wait_until(lambda: "event_awaited" in _statuses(dev, second), "the second run to wait")
        webhook = dev.cli(
            "send-event", "payment", "payment_settled", "--payload", '{"order_id": "o-8"}', "--id", "wh-1"
        )
        again = dev.cli(
            "send-event", "payment", "payment_settled", "--payload", '{"order_id": "o-8"}', "--id", "wh-1"
        )
        other = dev.cli("status", second, "--wait", WAIT, "--json")

    assert early.exit_code == 0, early.stderr
    assert "no job waits for it now" in early.stdout
    assert done.exit_code == 0, dev.stderr
    assert done.report["jobs"]["payment_settled"]["output"] == {"order_id": "o-7", "paid": 12}
    assert done.jobs()["ship"] == ("succeeded", 1)
    assert webhook.exit_code == 0, webhook.stderr
    assert f"delivered to job payment_settled of run {second} (attempt 1)" in webhook.stdout
    assert "sent before with this id" in again.stdout
    assert other.report["jobs"]["payment_settled"]["output"] == {"order_id": "o-8"}
    # progress tells how to send it
    assert (
        f"python -m cdk_app send-event payment payment_settled --payload '{{...}}' --run {second}"
        in dev.stderr
    )


def test_send_event_json_receipt_names_the_event_and_where_it_went(store: list[str]) -> None:
    result = cli(
        "send-event", "payment", "payment_settled", "--payload", "{}", "--id", "e-1", "--json", *store
    )

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"event_id": "e-1", "created": True, "delivered": []}


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--payload", "{oops"], EXIT_USAGE, "--payload is not JSON"),
        (["--run", "missing"], EXIT_PROBLEMS, "no run 'missing'"),
        (["--id", "has space"], EXIT_PROBLEMS, "event id is 1 to 128"),
    ],
    ids=["payload", "run", "id"],
)
def test_a_send_that_cannot_be_made_says_why(
    store: list[str], argv: list[str], code: int, message: str
) -> None:
    result = cli("send-event", "payment", "payment_settled", *argv, *store)

    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def _statuses(dev: Any, run_id: str) -> list[str]:
    history = dev.cli("history", run_id, "--json")
    return [entry["status"] for entry in history.listing] if history.exit_code == 0 else []
