"""Every shared change reaches every function: workflow stacks read the shared layer, secret and
bus through weak references, so what changes their templates is the shared version tag."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Stack

import cdk_app.app
from cdk_app.app import SHARED_VERSION_TAG
from cdk_app.config import AppConfig
from constructs.bundling import RUNTIME_REQUIREMENTS, DependencyLayerProps
from runtime.definition.loader import load_workflows
from tests.cdk_fixtures import REPO, resources_of_type, synthesize, templates_of

ATLAS = {"atlasProjectId": "proj-1", "atlasAppId": "app-1", "atlasServiceId": "svc-1"}
TAGGED = ("AWS::Lambda::Function", "AWS::Events::Rule")
"""What reads a shared value: functions (layer, secret) and rules (bus)."""


def workflow_templates(config: AppConfig) -> dict[str, dict[str, dict[str, Any]]]:
    """Workflow name -> its stack's templates (parent and nested), for every spec in workflows/."""
    _, built = synthesize(load_workflows([REPO / "workflows"]), config)
    return {name: templates_of(Stack.of(construct)) for name, construct in built.workflows.items()}


def shared_version_tags(templates: dict[str, dict[str, Any]]) -> set[str]:
    tags = set()
    for template in templates.values():
        for type_ in TAGGED:
            for resource in resources_of_type(template, type_).values():
                values = [
                    tag["Value"] for tag in resource["Properties"]["Tags"] if tag["Key"] == SHARED_VERSION_TAG
                ]
                assert len(values) == 1, resource
                tags.update(values)
    return tags


@pytest.fixture(scope="module")
def before() -> dict[str, dict[str, dict[str, Any]]]:
    return workflow_templates(AppConfig.from_mapping(ATLAS))


def assert_every_workflow_stack_changed(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert set(after) == set(before)
    for name in before:
        assert json.dumps(after[name], sort_keys=True) != json.dumps(before[name], sort_keys=True), name
        (old,), (new,) = shared_version_tags(before[name]), shared_version_tags(after[name])
        assert old != new, name


def test_nothing_shared_changed_nothing_changes(before):
    again = workflow_templates(AppConfig.from_mapping(ATLAS))

    for name in before:
        assert json.dumps(again[name], sort_keys=True) == json.dumps(before[name], sort_keys=True), name


def test_a_new_layer_pin_changes_every_workflow_stack(before, tmp_path: Path, monkeypatch):
    bumped = tmp_path / "requirements.txt"
    bumped.write_text(RUNTIME_REQUIREMENTS.read_text().replace("pymongo==", "pymongo==4.19.0 # was "))
    assert bumped.read_text() != RUNTIME_REQUIREMENTS.read_text()
    monkeypatch.setattr(
        cdk_app.app, "DependencyLayerProps", functools.partial(DependencyLayerProps, requirements=bumped)
    )

    after = workflow_templates(AppConfig.from_mapping(ATLAS))

    assert_every_workflow_stack_changed(before, after)


def test_a_replaced_trigger_changes_every_workflow_stack(before):
    after = workflow_templates(AppConfig.from_mapping(ATLAS | {"atlasTriggerName": "statuses-v2"}))

    assert_every_workflow_stack_changed(before, after)


def test_every_function_and_rule_carries_the_one_shared_version(before):
    versions = {version for templates in before.values() for version in shared_version_tags(templates)}

    assert len(versions) == 1
