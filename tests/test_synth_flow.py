"""Synthesis of the failure handlers: each is a function like a job (``<workflow>-job-<name>``,
its own role, failing over to the orchestrator), and a spec that gains ``on_failure`` only adds
resources."""

from __future__ import annotations

import json

import pytest
from aws_cdk import Stack

from runtime.definition.loader import load_workflow
from tests.cdk_fixtures import REPO, resources_of_type, synthesize, templates_of
from tests.test_app_synth import logical_ids

pytestmark = pytest.mark.synth

HANDLERS = """on_failure:
  release_lock: {timeout: 30}
  page_someone: {after: [release_lock], retries: 0}
"""


def _with_handlers(tmp_path):
    spec = (REPO / "workflows" / "catch_the_fish.yaml").read_text()
    grown = tmp_path / "catch_the_fish.yaml"
    grown.write_text(spec.replace("notify:", HANDLERS + "notify:"))
    return load_workflow(grown)


def test_gaining_on_failure_only_adds_resources_and_each_handler_is_a_job_function(tmp_path):
    before = load_workflow(REPO / "workflows" / "catch_the_fish.yaml")
    after = _with_handlers(tmp_path)
    assert after.on_failure is not None

    first = logical_ids(templates_of(Stack.of(synthesize([before])[1].workflows["catch_the_fish"])))
    templates = templates_of(Stack.of(synthesize([after])[1].workflows["catch_the_fish"]))
    second = logical_ids(templates)

    assert {key: kind for key, kind in first.items() if second.get(key) != kind} == {}
    added = sorted(kind for key, kind in second.items() if key not in first)
    assert added.count("AWS::Lambda::Function") == 2
    functions = {
        function["Properties"]["FunctionName"]: function["Properties"]
        for template in templates.values()
        for function in resources_of_type(template, "AWS::Lambda::Function").values()
    }
    assert functions["catch_the_fish-job-release_lock"]["Timeout"] == 30
    assert "catch_the_fish-job-page_someone" in functions
    definition = json.dumps(after.to_document())
    assert '"on_failure": {"name": "on_failure"' in definition
