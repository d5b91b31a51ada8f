"""What the orchestrator loads of the outputs kept by reference for a ``when`` or ``for_each``:
at most ``limits.OUTPUT_READ_MAX_BYTES`` of JSON in one decision, checked before it loads
anything, so a large output fails the run with the reason instead of exhausting the
orchestrator's memory (256 MB in Lambda) on every delivery."""

from __future__ import annotations

import re
from typing import Any

import pymongo
import pytest

from benchmarks import output_reads
from runtime import limits
from runtime.errors import OutputTooLarge
from runtime.store.mongo import MongoStore
from runtime.store.settings import StoreSettings
from tests.engine_harness import Driver, workflow

MIB = 1024 * 1024


@pytest.fixture
def store(mongo_client: pymongo.MongoClient[dict], store_settings: StoreSettings) -> MongoStore:
    store = MongoStore(mongo_client, store_settings)
    store.ensure_indexes()
    return store


def blob(size: int) -> dict[str, Any]:
    """An output of ``size`` bytes of JSON."""
    return {"ok": True, "blob": "x" * (size - len('{"ok": true, "blob": ""}'))}


def test_a_success_whose_dependents_when_reads_a_20_mb_output_is_handled_in_bounded_memory(
    mongo_uri: str,
) -> None:
    # GIVEN a job's 20 MB output (an array of small objects) kept by reference, and a dependent
    # whose when reads it; WHEN one orchestrator process handles the job's success:
    figures = output_reads.measure(mongo_uri, 20 * MIB, "rows")

    # THEN its memory hardly grows (it grew 172 MB, to 219 MB, before the orchestrator checked the
    # size), and the run fails with the reason rather than the handler being killed.
    assert figures["growth_mib"] < 32, figures
    assert (figures["run"], figures["use"]) == ("failed", "failed"), figures
    assert "the output of 'big', 20,971,5" in figures["error"]


def test_a_when_over_an_output_past_the_read_limit_fails_the_dependent_and_the_run_saying_why(
    store: MongoStore,
) -> None:
    spec = workflow("large", {"p": {"big": {}, "use": {"after": ["big"], "when": "results.big.ok"}}})
    ran: list[str] = []

    outcome = Driver(
        store, spec, handlers={"big": lambda e, c: blob(5 * MIB), "use": lambda e, c: ran.append("use")}
    ).run()

    assert outcome.run["status"] == "failed"
    assert outcome.run["jobs"]["big"]["state"] == "succeeded"
    assert outcome.run["jobs"]["use"]["state"] == "failed"
    assert ran == []
    error = outcome.run["error"]
    assert error.startswith("the 'when' of 'use' failed: it reads the output of 'big', 5,242,8")
    assert "bytes of JSON; a when or for_each may read at most 4,194,304 bytes" in error


def test_a_when_over_a_fan_outs_outputs_past_the_read_limit_fails_the_run(store: MongoStore) -> None:
    spec = workflow(
        "fanned",
        {
            "p": {
                "fan": {"for_each": "input.items", "max_concurrency": 4},
                "use": {"after": ["fan"], "when": "length(results.fan) > `0`"},
            }
        },
    )

    outcome = Driver(store, spec, handlers={"fan": lambda e, c: blob(3 * MIB // 2)}).run(
        run_input={"items": [1, 2, 3, 4]}
    )

    assert outcome.run["status"] == "failed"
    assert outcome.run["jobs"]["fan"]["state"] == "succeeded"
    assert outcome.run["jobs"]["use"]["state"] == "failed"
    assert re.search(r"it reads the output of 'fan', at least 4,[0-9,]+ bytes of JSON", outcome.run["error"])


def test_a_for_each_over_an_output_past_the_read_limit_fails_the_run(store: MongoStore) -> None:
    spec = workflow("listing", {"p": {"big": {}, "fan": {"after": ["big"], "for_each": "results.big.names"}}})
    names = {"names": ["y" * 1000] * (5 * 1024)}

    outcome = Driver(store, spec, handlers={"big": lambda e, c: names}).run()

    assert outcome.run["status"] == "failed"
    assert outcome.run["jobs"]["fan"]["state"] == "failed"
    assert outcome.run["error"].startswith(
        "the for_each of 'fan' (results.big.names) failed: it reads the output of 'big', 5,"
    )


def test_outputs_within_the_read_limit_are_read_whole_and_count_against_it_together(
    store: MongoStore,
) -> None:
    # Two dependents become ready in the same decision: each when reads 3 MB, 6 MB in all.
    spec = workflow(
        "pair",
        {
            "p": {
                "a": {},
                "b": {},
                "use_a": {"after": ["a", "b"], "when": "results.a.ok"},
                "use_b": {"after": ["a", "b"], "when": "results.b.ok"},
            }
        },
    )
    three = blob(3 * MIB)

    outcome = Driver(store, spec, handlers={"a": lambda e, c: three, "b": lambda e, c: three}).run()

    assert outcome.run["status"] == "failed"
    assert "already loaded for the other conditions of the same decision" in outcome.run["error"]

    single = workflow("single", {"p": {"a": {}, "use_a": {"after": ["a"], "when": "results.a.ok"}}})
    within = Driver(store, single, handlers={"a": lambda e, c: three}).run()
    assert within.run["status"] == "succeeded"
    assert within.run["jobs"]["use_a"]["state"] == "succeeded", "3 MB is within the limit: read whole"


def test_the_store_measures_before_it_loads_and_stops_summing_items_past_the_budget(
    store: MongoStore,
) -> None:
    outputs = store.items().outputs
    small = outputs.store("r/j/1", blob(200_000), "w")
    large = outputs.store("r/j/2", blob(limits.RUN_DOCUMENT_MAX_BYTES + 10), "w")
    assert large.startswith("gridfs:")

    value, size = outputs.load_within(small, 300_000)
    assert (value, size) == (blob(200_000), limits.json_bytes(blob(200_000)))
    with pytest.raises(OutputTooLarge, match=r"output:r/j/1 is 200,000 bytes of JSON, past 100,000") as too:
        outputs.load_within(small, 100_000)
    assert (too.value.size, too.value.at_least) == (200_000, False)
    with pytest.raises(OutputTooLarge, match=r"gridfs:r/j/2 is 16,711,690 bytes of JSON, past 4,194,304"):
        outputs.load_within(large, limits.OUTPUT_READ_MAX_BYTES)
