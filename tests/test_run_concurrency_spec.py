"""Run concurrency's spec keys (``concurrency``, ``priority``, ``on_limit``) from the file to the
run snapshot, what ``validate`` says about them, and queued runs as the CLI lists them."""

from __future__ import annotations

import uuid
from pathlib import Path

import pymongo
import pytest

from runtime.definition.loader import load_workflow
from runtime.definition.model import RunConcurrency, Workflow
from runtime.errors import SpecError
from tests.cli_harness import cli


def test_the_spec_keys_load_into_the_ir_and_survive_the_run_snapshot(tmp_path: Path) -> None:
    spec = tmp_path / "w.yaml"
    spec.write_text(
        "workflow: limited\nconcurrency: {limit: 3, key: input.tenant}\npriority: input.urgency\n"
        "on_limit: cancel_oldest\nphases:\n  p:\n    jobs:\n      a: {}\n"
    )
    loaded = load_workflow(spec)
    assert (loaded.concurrency, loaded.priority, loaded.on_limit) == (
        RunConcurrency(limit=3, key="input.tenant"),
        "input.urgency",
        "cancel_oldest",
    )
    again = Workflow.from_document(loaded.to_document())
    assert (again.concurrency, again.priority, again.on_limit) == (
        loaded.concurrency,
        "input.urgency",
        "cancel_oldest",
    )


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            "concurrency: {limit: 0}",
            r"\$\.concurrency\.limit: 0 is out of range: must be between 1 and 10000",
        ),
        (
            "concurrency: {limit: 2, key: tenant}",
            r"\$\.concurrency\.key: 'tenant' reads 'tenant'.*did you mean 'input\.tenant'",
        ),
        (
            "concurrency: {limit: 2}\npriority: 'input.p > 1'",
            r"\$\.priority: invalid JMESPath.*write 'input\.p > `1`'",
        ),
        ("priority: input.p", r"\$\.priority: 'priority' has no effect without 'concurrency'"),
        (
            "concurrency: {limit: 2}\non_limit: drop",
            r"\$\.on_limit: unknown value 'drop'; expected one of: queue, skip, cancel_oldest",
        ),
    ],
)
def test_validate_explains_a_wrong_flow_control_key(tmp_path: Path, keys: str, message: str) -> None:
    spec = tmp_path / "w.yaml"
    spec.write_text(f"workflow: limited\n{keys}\nphases:\n  p:\n    jobs:\n      a: {{}}\n")
    with pytest.raises(SpecError, match=message):
        load_workflow(spec)


def test_runs_lists_the_queued_runs(
    tmp_path: Path, mongo_uri: str, mongo_client: pymongo.MongoClient[dict]
) -> None:
    database = f"conc_{uuid.uuid4().hex[:12]}"
    store = ["--mongo-uri", mongo_uri, "--database", database]
    spec = tmp_path / "limited.yaml"
    spec.write_text("workflow: limited\nconcurrency: {limit: 1}\nphases:\n  p:\n    jobs:\n      a: {}\n")
    try:
        for run_id in ("first", "second"):
            assert cli("start", str(spec), *store, "--run-id", run_id).exit_code == 0

        listed = cli("runs", "--status", "queued", "--json", *store)
        shown = cli("status", "second", *store)

        assert listed.exit_code == 0, listed.stderr
        assert [(run["run_id"], run["status"]) for run in listed.listing] == [("second", "queued")]
        assert "queued" in shown.stdout
    finally:
        mongo_client.drop_database(database)
