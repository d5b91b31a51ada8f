"""A ``when`` that reads a field a job's output does not have fails the run, saying which path
and which fields the output has; ``get(object, 'field')`` reads a field that may be missing. Runs
through the real orchestrator and job wrapper on a real MongoDB server."""

from __future__ import annotations

from typing import Any

import pymongo
import pytest

from runtime.engine.conditions import MissingField, evaluate
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import Driver, workflow


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def _contracts(when: str) -> Any:
    return workflow(
        "contracts",
        {
            "classify": {"classify": {}},
            "publish": {
                "legal_review": {"when": when},
                "publish": {"after": ["legal_review"], "join": "any"},
            },
        },
    )


def _classify(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"sensitive": True, "label": "nda"}


def test_a_misspelled_field_in_when_fails_the_run_naming_the_path_and_the_fields(store: MongoStore) -> None:
    outcome = Driver(store, _contracts("results.classify.sensitve"), handlers={"classify": _classify}).run()

    assert outcome.run["status"] == "failed", "the legal review is not skipped silently"
    assert outcome.run["jobs"]["legal_review"]["state"] == "failed"
    assert outcome.run["error"] == (
        "the 'when' of 'legal_review' failed: results.classify has no field "
        "'sensitve' (its fields: label, sensitive); write get(results.classify, 'sensitve') for a "
        "field that may be missing"
    )
    assert outcome.executions["publish"] == 0


@pytest.mark.parametrize(
    ("when", "state"),
    [
        ("results.classify.sensitive", "succeeded"),
        ("get(results.classify, 'sensitve')", "skipped"),
        ("get(results.classify, 'label') == 'nda'", "succeeded"),
    ],
)
def test_a_field_the_output_has_or_one_read_with_get_decides_as_before(
    store: MongoStore, when: str, state: str
) -> None:
    outcome = Driver(store, _contracts(when), handlers={"classify": _classify}).run()

    assert outcome.run["status"] == "succeeded"
    assert outcome.run["jobs"]["legal_review"]["state"] == state


def test_nested_fields_are_strict_and_a_job_that_did_not_succeed_reads_as_null() -> None:
    results = {"classify": {"meta": {"score": 0.9}}}

    assert evaluate("results.classify.meta.score > `0.5`", None, results) is True
    with pytest.raises(
        MissingField, match=r"results\.classify\.meta has no field 'scor' \(its fields: score\)"
    ):
        evaluate("results.classify.meta.scor", None, results)
    assert evaluate("get(get(results.classify, 'other'), 'x')", None, results) is None
    assert evaluate("results.skipped_job.anything", None, results) is None, "no entry: as before"
    assert evaluate("input.missing", {"a": 1}, results) is None, "the input is read as JMESPath reads it"


def test_validate_accepts_get_and_checks_the_job_it_reads() -> None:
    from runtime.definition.loader import workflow_from_document
    from runtime.errors import SpecError

    def spec(when: str) -> dict[str, Any]:
        return {
            "workflow": "w",
            "phases": {"a": {"jobs": {"classify": {}}}, "b": {"jobs": {"review": {"when": when}}}},
        }

    workflow_from_document(spec("get(results.classify, 'sensitive')"))
    with pytest.raises(SpecError, match="'when' reads results.clasify, but there is no job 'clasify'"):
        workflow_from_document(spec("get(results.clasify, 'sensitive')"))
