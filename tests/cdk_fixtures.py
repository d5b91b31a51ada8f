"""CDK test fixtures: apps built with the project's cdk.json context, shared per session because
every synthesis goes through jsii (slow). Template tests skip bundling (no pip)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from runtime.definition.model import Job, Notify, Phase, Workflow

REPO = Path(__file__).resolve().parent.parent
NODE_BIN = REPO / "node_modules" / ".bin"

# jsii starts its Node process on first use of aws_cdk: make it the pinned Node 22, as `make` does.
os.environ["PATH"] = os.pathsep.join([str(REPO / ".venv" / "bin"), str(NODE_BIN), os.environ["PATH"]])

from aws_cdk import App, AssetStaging, CfnElement, Stack  # noqa: E402  (after PATH, see above)
from aws_cdk.assertions import Template  # noqa: E402

from cdk_app.app import WorkflowApp, build  # noqa: E402
from cdk_app.config import AppConfig  # noqa: E402
from constructs import IConstruct  # noqa: E402

NO_BUNDLING: dict[str, Any] = {"aws:cdk:bundling-stacks": []}
"""Context that makes CDK skip asset bundling (no pip run) in template tests."""


def cdk_json_context() -> dict[str, Any]:
    """The feature flags and defaults ``cdk synth`` uses, so tests synthesize the same output."""
    return dict(json.loads((REPO / "cdk.json").read_text(encoding="utf-8"))["context"])


def make_app(**context: Any) -> App:
    return App(context=cdk_json_context() | NO_BUNDLING | context)


def catch_the_fish(**changes: Any) -> Workflow:
    """The seed's workflow as IR (docs/architecture.md, "Spec language"), independent of the loader."""
    thinking = Phase(
        name="thinking",
        jobs=(
            Job(name="buy_fishing_gear", phase="thinking"),
            Job(name="rent_a_boat", phase="thinking", after=("buy_fishing_gear",)),
            Job(name="go_to_fishing_ground", phase="thinking", after=("rent_a_boat",)),
            Job(name="cast_fishing_pole", phase="thinking", after=("go_to_fishing_ground",)),
            Job(name="drink_beer", phase="thinking", after=("go_to_fishing_ground",)),
            Job(name="catch_fish", phase="thinking", after=("go_to_fishing_ground",)),
            Job(name="go_home", phase="thinking", after=("catch_fish",)),
        ),
    )
    cooking = Phase(
        name="cooking",
        jobs=(Job(name="clean", phase="cooking"), Job(name="cook", phase="cooking", after=("clean",))),
    )
    values: dict[str, Any] = {
        "name": "catch_the_fish",
        "description": "Go fishing, then cook the catch.",
        "phases": (thinking, cooking),
        "notify": Notify(on=("failed", "workflow_succeeded"), email=("ops@example.com",)),
    }
    return Workflow(**(values | changes))


def with_job_changes(workflow: Workflow, **changes_by_job: dict[str, Any]) -> Workflow:
    """``workflow`` with some jobs' fields changed: ``catch_fish={"env": {...}}``."""
    return replace(
        workflow,
        phases=tuple(
            replace(phase, jobs=tuple(replace(job, **changes_by_job.get(job.name, {})) for job in phase.jobs))
            for phase in workflow.phases
        ),
    )


def generated_workflow(name: str, jobs: int, phases: int = 10) -> Workflow:
    """``jobs`` stub jobs spread over ``phases``, each depending on the one before it."""
    per_phase = -(-jobs // phases)
    built = []
    for p in range(phases):
        names = [f"job_{p:02d}_{j:03d}" for j in range(per_phase) if p * per_phase + j < jobs]
        built.append(
            Phase(
                name=f"phase_{p:02d}",
                jobs=tuple(
                    Job(name=job, phase=f"phase_{p:02d}", after=(names[i - 1],) if i else ())
                    for i, job in enumerate(names)
                ),
            )
        )
    return Workflow(name=name, phases=tuple(phase for phase in built if phase.jobs))


def synthesize(
    workflows: Iterable[Workflow], config: AppConfig | None = None, **context: Any
) -> tuple[App, WorkflowApp]:
    app = make_app(**context)
    return app, build(app, config or AppConfig(), list(workflows))


def templates_of(stack: Stack) -> dict[str, dict[str, Any]]:
    """A stack's template and its nested stacks' templates, by stack path."""
    found = {stack.node.path: dict(Template.from_stack(stack).to_json())}
    for child in stack.node.find_all():
        if isinstance(child, Stack) and child is not stack and child.nested_stack_parent is stack:
            found |= templates_of(child)
    return found


def logical_id(construct: IConstruct) -> str:
    """The logical id of an L2 construct's resource in its own stack's template."""
    return Stack.of(construct).get_logical_id(cast(CfnElement, construct.node.default_child or construct))


def staged_code(construct: IConstruct) -> Path:
    """Where CDK staged the code asset of a function or layer (a folder in the assembly)."""
    return Path(
        cast(AssetStaging, construct.node.find_child("Code").node.find_child("Stage")).absolute_staged_path
    )


def resources_of_type(template: Mapping[str, Any], type_: str) -> dict[str, Any]:
    return {key: value for key, value in template.get("Resources", {}).items() if value["Type"] == type_}


@pytest.fixture(scope="session")
def fish_job_code(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """User code for two jobs: a single file and a folder with handler.py."""
    root = tmp_path_factory.mktemp("job_code")
    (root / "buy.py").write_text("def handler(event, context):\n    return {'gear': 'rod'}\n")
    (root / "catch").mkdir()
    (root / "catch" / "handler.py").write_text("def handler(event, context):\n    return {'fish': 3}\n")
    return {"buy_fishing_gear": str(root / "buy.py"), "catch_fish": str(root / "catch")}


@pytest.fixture(scope="session")
def fish_workflow(fish_job_code: dict[str, str]) -> Workflow:
    """catch_the_fish with user code for two jobs, job env, a schedule and a Slack webhook."""
    base = catch_the_fish()
    phases = tuple(
        Phase(
            name=phase.name,
            jobs=tuple(
                Job(
                    name=job.name,
                    phase=job.phase,
                    after=job.after,
                    code=fish_job_code.get(job.name),
                    env={"BAIT": "worms"} if job.name == "catch_fish" else {},
                    memory=512 if job.name == "catch_fish" else job.memory,
                )
                for job in phase.jobs
            ),
        )
        for phase in base.phases
    )
    return catch_the_fish(
        phases=phases,
        schedule="cron(0 6 * * ? *)",
        schedule_input={"mode": "fast"},
        notify=Notify(
            on=("failed", "workflow_succeeded"),
            email=("ops@example.com", "cook@example.com"),
            slack_webhook_secret="workflows/slack-webhook",
        ),
    )


@pytest.fixture(scope="session")
def fish_app(fish_workflow: Workflow) -> tuple[App, WorkflowApp]:
    return synthesize([fish_workflow])


@pytest.fixture(scope="session")
def fish_templates(fish_app: tuple[App, WorkflowApp]) -> dict[str, dict[str, Any]]:
    """Every template of the catch_the_fish stack (parent first, then its nested job stacks)."""
    _, built = fish_app
    return templates_of(Stack.of(built.workflows["catch_the_fish"]))


@pytest.fixture(scope="session")
def fish_template(fish_app: tuple[App, WorkflowApp]) -> Template:
    _, built = fish_app
    return Template.from_stack(Stack.of(built.workflows["catch_the_fish"]))
