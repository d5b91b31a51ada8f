"""A job's ``concurrency`` and ``rate_limit`` spec keys: from the file to the run snapshot, what
``validate`` says about a wrong one, and what ``status`` says about an attempt that waits."""

from __future__ import annotations

import uuid
from pathlib import Path

import pymongo
import pytest

from cdk_app.local.atlas_events import envelope
from runtime.definition.loader import load_workflow
from runtime.definition.model import Workflow
from runtime.definition.model_limits import JobConcurrency, RateLimit
from runtime.errors import SpecError
from runtime.service.orchestrator import Orchestrator
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.cli_harness import cli
from tests.engine_harness import RecordingDispatcher

SPEC = """workflow: payments
phases:
  p:
    jobs:
      customers: {{}}
      charge_card:
        after: [customers]
        for_each: results.customers
{keys}
"""


def spec_file(tmp_path: Path, keys: str) -> Path:
    spec = tmp_path / "payments.yaml"
    indented = "\n".join(f"        {line}" for line in keys.splitlines())
    spec.write_text(SPEC.format(keys=indented))
    return spec


def test_the_keys_load_into_the_ir_and_survive_the_run_snapshot(tmp_path: Path) -> None:
    loaded = load_workflow(
        spec_file(
            tmp_path,
            "rate_limit: {limit: 20, period: 1, key: item.tenant}\nconcurrency: {limit: 5, key: item.tenant}",
        )
    )
    job = loaded.job("charge_card")
    assert job.rate_limit == RateLimit(limit=20, period=1.0, key="item.tenant")
    assert job.concurrency == JobConcurrency(limit=5, key="item.tenant")
    again = Workflow.from_document(loaded.to_document()).job("charge_card")
    assert (again.rate_limit, again.concurrency) == (job.rate_limit, job.concurrency)
    assert load_workflow(spec_file(tmp_path, "rate_limit: {limit: 2}")).job(
        "charge_card"
    ).rate_limit == RateLimit(limit=2, period=1.0)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            "concurrency: {limit: 0}",
            r"\$\.phases\.p\.jobs\.charge_card\.concurrency\.limit: 0 is out of range: "
            r"must be between 1 and 10000",
        ),
        (
            "rate_limit: {limit: 20, period: 0}",
            r"\$\.phases\.p\.jobs\.charge_card\.rate_limit\.period: 0",
        ),
        (
            "concurrency: {limit: 2, key: tenant}",
            r"\$\.phases\.p\.jobs\.charge_card\.concurrency\.key: 'tenant' reads 'tenant', but a job's "
            r"concurrency key is worked out when an attempt is dispatched.*did you mean 'input\.tenant'",
        ),
        (
            "rate_limit: {limit: 2, key: 'item.tenant =='}",
            r"\$\.phases\.p\.jobs\.charge_card\.rate_limit\.key: invalid JMESPath",
        ),
        (
            "rate_limit: {limit: 2, key: item.tenant}\nconcurrency: {limit: 1, key: input.region}",
            r"\$\.phases\.p\.jobs\.charge_card\.rate_limit\.key: job 'charge_card' has a concurrency key "
            r"'input\.region' and a rate_limit key 'item\.tenant'",
        ),
        ("rate_limit: {limit: 2, per: 1}", r"rate_limit.*'per'"),
    ],
)
def test_validate_explains_a_wrong_job_limit(tmp_path: Path, keys: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_workflow(spec_file(tmp_path, keys))


def test_status_says_why_an_attempt_waits(
    tmp_path: Path, mongo_uri: str, mongo_client: pymongo.MongoClient[dict]
) -> None:
    database = f"jobl_{uuid.uuid4().hex[:12]}"
    store = ["--mongo-uri", mongo_uri, "--database", database]
    spec = tmp_path / "limited.yaml"
    spec.write_text(
        "workflow: limited\nphases:\n  p:\n    jobs:\n"
        "      charge_card: {concurrency: {limit: 1, key: input.tenant}}\n"
    )
    try:
        for run_id in ("first", "second"):
            assert (
                cli("start", str(spec), *store, "--run-id", run_id, "--input", '{"tenant": "t42"}').exit_code
                == 0
            )
        # The orchestrator applies the runs' starts as the trigger would deliver them.
        settings = StoreSettings(database=database)
        mongo = MongoStore(mongo_client, settings)
        orchestrator = Orchestrator(mongo, RecordingDispatcher())
        for run_id in ("first", "second"):
            for status in mongo.run_statuses(run_id):
                orchestrator.handle(envelope(status, database, settings.statuses_collection))

        shown = cli("status", "second", *store)
        as_json = cli("status", "second", "--json", *store)

        assert "waits: concurrency 1 on charge_card with key t42 (1 waiting)" in shown.stdout
        waits = "concurrency 1 on charge_card with key t42 (1 waiting)"
        assert as_json.report["jobs"]["charge_card"]["waits"] == waits
        assert "waits" not in cli("status", "first", *store).stdout
    finally:
        mongo_client.drop_database(database)
