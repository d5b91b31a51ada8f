"""Each deployment contract is stated once, in ``runtime/contracts.py``: the synthesized functions
set only names the loader keeps out of a spec's ``env``, and no other module spells the names."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from constructs.workflow import RECONCILER_TIMEOUT
from runtime import contracts
from runtime.definition.canonical import RESERVED_ENV
from runtime.definition.model import Workflow
from tests.cdk_fixtures import resources_of_type

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_VALUES = contracts.ENVIRONMENT_NAMES | {contracts.PARTNER_SOURCE_PREFIX}


def test_every_variable_the_constructs_set_is_one_a_spec_may_not_set(
    fish_templates: dict[str, dict[str, Any]], fish_workflow: Workflow
) -> None:
    user_names = {name for job in fish_workflow.jobs() for name in job.env}
    set_by_constructs = {
        name
        for template in fish_templates.values()
        for function in resources_of_type(template, "AWS::Lambda::Function").values()
        for name in function["Properties"]["Environment"]["Variables"]
    } - user_names

    assert set_by_constructs  # the fixture's functions do get variables
    assert set_by_constructs - RESERVED_ENV == set()
    assert set_by_constructs <= contracts.ENVIRONMENT_NAMES


def test_the_system_functions_have_the_contracts_size(fish_templates: dict[str, dict[str, Any]]) -> None:
    system = [
        function["Properties"]
        for template in fish_templates.values()
        for function in resources_of_type(template, "AWS::Lambda::Function").values()
        if function["Properties"]["Handler"] != "runtime.handlers.job.handler"
    ]

    assert len(system) == 4
    # The reconciler repairs many runs in one pass, so it alone gets a longer timeout.
    reconciler = [f for f in system if f["Handler"] == "runtime.handlers.reconciler.handler"]
    assert [(f["MemorySize"], f["Timeout"]) for f in reconciler] == [
        (contracts.SYSTEM_FUNCTION_MEMORY_MB, RECONCILER_TIMEOUT.to_seconds())
    ]
    assert {(f["MemorySize"], f["Timeout"]) for f in system if f not in reconciler} == {
        (contracts.SYSTEM_FUNCTION_MEMORY_MB, contracts.SYSTEM_FUNCTION_TIMEOUT_SECONDS)
    }


def _modules() -> list[Path]:
    return sorted(
        path
        for folder in ("runtime", "constructs", "cdk_app", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        if path != ROOT / "runtime" / "contracts.py"
    )


@pytest.mark.parametrize("module", _modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_module_but_the_contracts_spells_a_contract(module: Path) -> None:
    spelled = sorted(
        f"line {node.lineno}: {node.value!r}"
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in CONTRACT_VALUES
    )

    assert spelled == [], "use runtime.contracts instead"


def test_the_public_job_event_type_has_every_key_a_handler_receives() -> None:
    """``runtime.job.JobEvent`` (what a handler may type its event as) stays in lockstep with the
    event the job wrapper hands the handler: the dispatched payload less ``references``, which
    the wrapper resolves into ``results``."""
    from runtime.documents.events import JobEvent as DispatchedJob
    from runtime.documents.failures import Failure
    from runtime.job import FailureInfo, JobEvent, JobFailure, RunOutcome

    widest = DispatchedJob(
        run_id="r",
        workflow="w",
        phase="p",
        job="j",
        attempt=1,
        failure=Failure(reason="failed", phase="p", job="j", attempt=1, error="e", caused_by="k").to_event(),
        failures={"a": {"error": "OSError: disk", "type": "OSError", "attempt": 2}},
        run={"status": "failed", "error": "e", "failures": {}},
        references={"a": "output:r/a/1"},
        index=0,
        item="x",
        callback=True,
        callback_token="cb1.x.y",
    ).to_payload()
    widest.pop("references")
    assert set(JobEvent.__required_keys__) | set(JobEvent.__optional_keys__) == set(widest)
    assert set(FailureInfo.__required_keys__) == set(widest["failure"])
    assert set(JobFailure.__required_keys__) == set(widest["failures"]["a"])
    assert set(RunOutcome.__required_keys__) == set(widest["run"])
