"""The spec language's data flow and failure rules end to end: ``python -m cdk_app run`` over the
specs in tests/specs/flow (after across phases, join any/all, allow_failure, on_failure
handlers, input_schema), on the session's MongoDB server, without and with injected faults."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from tests.cli_harness import CliResult, cli

SPECS = Path(__file__).resolve().parent / "specs" / "flow"

S, F, K, P, U = "succeeded", "failed", "skipped", "pending", "upstream_failed"


def failure(
    job: str | None, attempt: int | None, reason: str = "failed", phase: str = "work"
) -> dict[str, Any]:
    """A handler's view of the failure, without the error text (asserted apart)."""
    return {"phase": phase, "job": job, "attempt": attempt, "reason": reason}


CASES: dict[str, dict[str, Any]] = {
    "etl_across_phases": {
        "status": S,
        "jobs": {"extract": (S, 1), "transform": (S, 1), "load_warehouse": (S, 1)},
        "outputs": {"transform": {"rows": [10, 20, 30]}, "load_warehouse": {"loaded": 3}},
    },
    "etl_nothing_to_load": {
        "input": {"rows": []},
        "status": S,
        "jobs": {"extract": (S, 1), "load_warehouse": (K, 0), "report": (S, 1)},
        "outputs": {"extract": {"rows": []}, "report": {"job": "report", "saw": ["extract"]}},
    },
    "orders_any_join": {
        "input": {"score": 0.95},
        "status": S,
        "jobs": {
            "fraud": (S, 1),
            "manual_review": (S, 1),
            "auto_approve": (K, 0),
            "ship": (S, 1),
            "ship_all": (K, 0),
        },
        "outputs": {
            "ship": {"approved_by": ["manual_review"]},
            "manual_review": {"job": "manual_review", "saw": ["fraud"]},
        },
    },
    "orders_any_join:auto": {
        "input": {"score": 0.1},
        "status": S,
        "jobs": {
            "fraud": (S, 1),
            "manual_review": (K, 0),
            "auto_approve": (S, 1),
            "ship": (S, 1),
            "ship_all": (K, 0),
        },
        "outputs": {"ship": {"approved_by": ["auto_approve"]}},
    },
    "any_chain_skipped": {
        "input": {"go": False},
        "status": S,
        "jobs": {
            "left": (K, 0),
            "right": (K, 0),
            "either": (K, 0),
            "then_either": (K, 0),
            "independent": (S, 1),
            "after_all": (S, 1),
        },
        "outputs": {"after_all": {"job": "after_all", "saw": []}},
    },
    "only_skipped_phase": {
        "input": {},
        "status": S,
        "jobs": {
            "prepare": (S, 1),
            "maybe_a": (K, 0),
            "maybe_b": (K, 0),
            "needs_a": (K, 0),
            "any_of_them": (S, 1),
        },
        "outputs": {"any_of_them": {"job": "any_of_them", "saw": ["prepare"]}},
    },
    "tolerated_failure": {
        "status": S,
        "jobs": {
            "required": (S, 1),
            "optional": (F, 2),
            "needs_optional": (U, 0),
            "either": (S, 1),
            "cross_phase_any": (S, 1),
        },
        "outputs": {
            "either": {"job": "either", "saw": ["required"]},
            "cross_phase_any": {"job": "cross_phase_any", "saw": ["required"]},
        },
        "tolerated": ["optional"],
    },
    "on_failure_handlers": {
        "status": F,
        "jobs": {
            "lock": (S, 1),
            "charge": (F, 2),
            "never": (U, 0),
            "unreached": (P, 0),
            "release_lock": (S, 1),
            "page": (S, 1),
        },
        "outputs": {
            "release_lock": {"job": "release_lock", "saw": ["lock"], "failure": failure("charge", 2)},
            "page": {"job": "page", "saw": ["lock", "release_lock"], "failure": failure("charge", 2)},
        },
        "error": "job 'charge' failed after 2 attempt(s): RuntimeError: charge broke on attempt 2",
    },
    "failing_handler": {
        "status": F,
        "jobs": {
            "breaks": (F, 1),
            "rollback": (F, 2),
            "after_rollback": (U, 0),
            "notify": (S, 1),
            "only_on_cancel": (K, 0),
        },
        "outputs": {"notify": {"job": "notify", "saw": [], "failure": failure("breaks", 1)}},
        "error": "job 'breaks' failed after 1 attempt(s)",
    },
    "handlers_not_needed": {
        "status": S,
        "jobs": {"fine": (S, 1), "flaky_optional": (F, 1), "page": (P, 0)},
        "outputs": {},
        "tolerated": ["flaky_optional"],
    },
    "ml_pipeline": {
        "input": {"score": 0.95, "threshold": 0.9},
        "status": S,
        "jobs": {
            "prepare": (S, 1),
            "train_small": (S, 1),
            "train_large": (F, 1),
            "evaluate": (S, 1),
            "deploy": (S, 1),
            "alert": (P, 0),
        },
        "outputs": {"evaluate": {"score": 0.95}, "deploy": {"job": "deploy", "saw": ["evaluate"]}},
        "tolerated": ["train_large"],
    },
    "ml_pipeline:not_good_enough": {
        "input": {"score": 0.5, "threshold": 0.9},
        "status": S,
        "jobs": {
            "prepare": (S, 1),
            "train_small": (S, 1),
            "train_large": (F, 1),
            "evaluate": (S, 1),
            "deploy": (K, 0),
            "alert": (P, 0),
        },
        "outputs": {"evaluate": {"score": 0.5}},
        "tolerated": ["train_large"],
    },
    "inline_input_schema": {
        "input": {"order_id": "o-17", "quantity": 2},
        "status": S,
        "jobs": {"take_order": (S, 1)},
        "outputs": {"take_order": {"job": "take_order", "saw": []}},
    },
    "handlers_join_any": {
        "status": F,
        "jobs": {
            "reserve": (S, 1),
            "pay": (F, 1),
            "refund": (F, 1),
            "unreserve": (S, 1),
            "cleanup": (S, 1),
            "audit": (U, 0),
        },
        "outputs": {
            "cleanup": {"job": "cleanup", "saw": ["reserve", "unreserve"], "failure": failure("pay", 1)}
        },
    },
}
"""Per case (``<spec>`` or ``<spec>:<variant>``): input, outcome, (state, attempts) of every job,
the outputs that matter, the tolerated failures and the start of the run's error."""


@pytest.fixture
def run(mongo_uri: str, mongo_client: pymongo.MongoClient[dict]) -> Iterator[Any]:
    databases: list[str] = []

    def run_case(case: str, *options: str) -> CliResult:
        expected = CASES[case]
        databases.append(f"flow_{uuid.uuid4().hex[:12]}")
        spec = SPECS / f"{case.split(':')[0]}.yaml"
        argv = ["run", str(spec), "--json", "--mongo-uri", mongo_uri, "--database", databases[-1]]
        if "input" in expected:
            argv += ["--input", json.dumps(expected["input"])]
        return cli(*argv, "--timeout", "60", *options)

    yield run_case
    for name in databases:
        mongo_client.drop_database(name)


def assert_outcome(case: str, result: CliResult) -> None:
    expected = CASES[case]
    report = result.report
    assert (report["status"], result.jobs()) == (expected["status"], expected["jobs"])
    assert result.exit_code == (0 if expected["status"] == S else 1)
    for name, output in expected["outputs"].items():
        got = report["jobs"][name]["output"]
        if "failure" in output:
            assert got["failure"]["error"].startswith(expected.get("error", "job "))
            got = {
                **got,
                "failure": {key: got["failure"][key] for key in ("phase", "job", "attempt", "reason")},
            }
        assert got == output, name
    assert report["tolerated"] == expected.get("tolerated", [])
    assert [name for name, job in report["jobs"].items() if job["tolerated"]] == expected.get("tolerated", [])
    if "error" in expected:
        assert report["error"].startswith(expected["error"])
    for name, job in report["jobs"].items():
        assert job["executions"] == job["attempts"], f"{name}: {job}"


def test_the_flow_corpus_has_a_dozen_specs_and_every_one_has_a_case() -> None:
    specs = {path.stem for path in SPECS.glob("*.yaml")}
    assert len(specs) >= 12
    assert specs == {case.split(":")[0] for case in CASES}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_flow_spec_runs_as_its_rules_say(run: Any, case: str) -> None:
    result = run(case)

    assert_outcome(case, result)
    assert result.report["faults"] == {"duplicated": 0, "reordered": 0, "crashes": 0, "redeliveries": 0}


@pytest.mark.faults
@pytest.mark.parametrize(("faults", "seed"), [("duplicate=3", 2), ("duplicate=2,reorder,crash=0.3", 5)])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_flow_spec_under_faults_ends_exactly_like_the_fault_free_run(
    run: Any, case: str, faults: str, seed: int
) -> None:
    result = run(case, "--faults", faults, "--seed", str(seed))

    assert_outcome(case, result)
    counters = result.report["faults"]
    assert counters["duplicated"] > 0
    assert counters["redeliveries"] == counters["crashes"]


def test_the_summary_names_the_tolerated_failures(
    mongo_uri: str, mongo_client: pymongo.MongoClient[dict]
) -> None:
    database = f"flow_{uuid.uuid4().hex[:12]}"
    try:
        result = cli(
            "run", str(SPECS / "tolerated_failure.yaml"), "--mongo-uri", mongo_uri, "--database", database
        )
    finally:
        mongo_client.drop_database(database)

    assert result.exit_code == 0
    assert "failed and tolerated (allow_failure): optional" in result.stdout
    # The notifier's subject, once: ``failed`` is the job's final failure (its retry's), not each attempt's
    assert result.stderr.count("tolerated_failure: job optional failed") == 1


def test_the_summary_lists_the_handlers_under_their_own_heading(
    mongo_uri: str, mongo_client: pymongo.MongoClient[dict]
) -> None:
    database = f"flow_{uuid.uuid4().hex[:12]}"
    try:
        result = cli(
            "run", str(SPECS / "on_failure_handlers.yaml"), "--mongo-uri", mongo_uri, "--database", database
        )
    finally:
        mongo_client.drop_database(database)

    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    heading = next(index for index, line in enumerate(lines) if line.strip() == "on_failure")
    assert [line.split()[0] for line in lines[heading + 1 : heading + 3]] == ["release_lock", "page"]


# --- input_schema ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "run_input", "problems"),
    [
        (
            "inline_input_schema.yaml",
            {"order_id": "17", "quantity": 0, "note": 1},
            ["$.order_id: '17' does not match '^o-[0-9]+$'", "$.quantity: 0 is less than the minimum of 1"],
        ),
        (
            "inline_input_schema.yaml",
            {"order_id": "o-17", "quantity": 1, "notify": "the warehouse"},
            ["$.notify: 'the warehouse' is not a 'email'"],
        ),
        (
            "ml_pipeline.yaml",
            {"score": 2, "extra": True},
            [
                "$: 'threshold' is a required property",
                "$: Additional properties are not allowed ('extra' was unexpected)",
                "$.score: 2 is greater than the maximum of 1",
            ],
        ),
    ],
    ids=["inline", "a_format", "from_a_file"],
)
@pytest.mark.parametrize("command", ["run", "start"])
def test_an_input_the_schema_refuses_is_refused_with_every_problem_and_nothing_is_written(
    mongo_uri: str,
    mongo_client: pymongo.MongoClient[dict],
    tmp_path: Path,
    command: str,
    spec: str,
    run_input: dict[str, Any],
    problems: list[str],
) -> None:
    database = f"flow_{uuid.uuid4().hex[:12]}"
    given = tmp_path / "input.json"
    given.write_text(json.dumps(run_input), encoding="utf-8")

    result = cli(
        command,
        str(SPECS / spec),
        "--input-file",
        str(given),
        "--mongo-uri",
        mongo_uri,
        "--database",
        database,
    )

    assert result.exit_code == 2
    lines = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert sorted(lines) == sorted(problems)
    assert "does not match the input_schema of" in result.stderr.splitlines()[0]
    assert database not in mongo_client.list_database_names()


def test_an_input_file_that_is_not_a_json_object_is_a_usage_error(tmp_path: Path) -> None:
    given = tmp_path / "input.json"
    given.write_text("[1, 2]", encoding="utf-8")

    result = cli("start", str(SPECS / "inline_input_schema.yaml"), "--input-file", str(given))

    assert result.exit_code == 2
    assert f"--input-file {given} must be a JSON object, got list" in result.stderr


def test_input_and_input_file_exclude_each_other(tmp_path: Path) -> None:
    result = cli("run", str(SPECS / "inline_input_schema.yaml"), "--input", "{}", "--input-file", "x.json")

    assert result.exit_code == 2
    assert "not allowed with argument" in result.stderr
