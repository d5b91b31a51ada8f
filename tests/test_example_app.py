"""The embedded example (examples/embedded_app) synthesizes: in a test app, and as the command in
docs/deploy.md runs it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from types import ModuleType

import pytest
from aws_cdk import Stack
from aws_cdk.assertions import Template

from tests.cdk_fixtures import REPO, logical_id, make_app, resources_of_type, templates_of
from tests.test_app_synth import nag_findings

EXAMPLE = REPO / "examples" / "embedded_app" / "app.py"


def example_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("embedded_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example() -> tuple[object, Stack]:
    module = example_module()
    app = make_app()
    return module, module.FishingStack(app, "Fishing")


def test_the_example_stack_holds_the_layer_the_secret_and_the_workflow(example):
    _, stack = example

    template = Template.from_stack(stack)

    template.resource_count_is("AWS::Lambda::LayerVersion", 1)
    # The MongoDB connection secret, and the status key the workflow makes when given none.
    template.resource_count_is("AWS::SecretsManager::Secret", 2)
    assert "Fn::GetStackOutput" not in json.dumps(templates_of(stack))


def test_the_example_grants_its_bucket_to_one_job_only(example):
    module, stack = example
    workflow = stack.workflow

    granted = [
        policy["Properties"]["Roles"]
        for template in templates_of(stack).values()
        for policy in resources_of_type(template, "AWS::IAM::Policy").values()
        if module.CATCH_LOG_BUCKET in json.dumps(policy["Properties"]["PolicyDocument"])
    ]

    assert granted == [[{"Ref": logical_id(workflow.job_role("catch_fish"))}]]
    assert workflow.job_role("catch_fish") is not workflow.job_roles["buy_bait"]


def test_the_example_has_no_unacknowledged_cdk_nag_findings(example):
    _, stack = example

    assert nag_findings(stack.node.root) == []


@pytest.mark.synth
def test_the_documented_steps_synthesize_the_example_in_a_project_of_its_own(tmp_path):
    """docs/deploy.md, literally: a new project with ``constructs/`` and ``runtime/`` copied into
    its root, nothing else of this repository (no ``workflows/``, no ``cdk_app/``)."""
    project = tmp_path / "my-project"
    for folder in ("constructs", "runtime", "examples/embedded_app"):
        shutil.copytree(REPO / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    # The layer's pip install is kept between runs, as cdk.out keeps it in a project.
    outdir = REPO / ".build" / "example-cdk.out"
    env = os.environ | {"PYTHONPATH": ".", "CDK_OUTDIR": str(outdir)}

    result = subprocess.run(
        [sys.executable, "examples/embedded_app/app.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    template = json.loads((outdir / "Fishing.template.json").read_text())
    assert resources_of_type(template, "AWS::Lambda::LayerVersion")
