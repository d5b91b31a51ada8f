"""No input, however broken, gives anything but a ``SpecError``; whatever loads keeps the IR's
promises. Random documents, random edits of catch_the_fish, and random edits of its YAML text."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.definition.loader import SPEC_KEYS, load_workflow, workflow_from_document
from runtime.definition.model import Workflow
from runtime.errors import SpecError
from runtime.statuses import NOTIFY_EVENTS

ROOT = Path(__file__).resolve().parents[1]
CATCH_THE_FISH = ROOT / "workflows" / "catch_the_fish.yaml"
CATCH_TEXT = CATCH_THE_FISH.read_text(encoding="utf-8")

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WORDS = sorted(
    {key for keys in SPEC_KEYS.values() for key in keys}
    | set(NOTIFY_EVENTS)
    | {"thinking", "cooking", "catch_fish", "go_home", "clean", "end", "thinkingStart", "cookingStart"}
    | {"on", "no", "yes", "y", "n", "off", "true", "null", "~", "a.b", "$set", "", "rate(1 day)", "input.x"}
)
"""Names the loader cares about, and the usual traps, so random documents hit real code paths."""

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats()
    | st.sampled_from(WORDS)
    | st.text(max_size=20)
)
keys = st.sampled_from(WORDS) | st.text(max_size=12)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=30,
)


def _catch_the_fish_document() -> dict[str, Any]:
    workflow = load_workflow(CATCH_THE_FISH)
    return {
        "workflow": workflow.name,
        "description": workflow.description,
        "phases": {
            phase.name: {"jobs": {job.name: {"after": list(job.after)} for job in phase.jobs}}
            for phase in workflow.phases
        },
        "notify": {"on": list(workflow.notify.on), "email": list(workflow.notify.email)},
    }


BASE = _catch_the_fish_document()


def _paths(value: object, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


def _assert_sound(workflow: Workflow) -> None:
    """What the engine and the constructs rely on without checking again."""
    names = [job.name for job in workflow.jobs()]
    assert len(names) == len(set(names))
    assert len(workflow.phase_order()) == len(workflow.phases) >= 1
    for phase in workflow.phases:
        assert phase.jobs
        assert phase.roots
        local = {job.name for job in phase.jobs}
        earlier = set(workflow.earlier_jobs(phase.name))
        assert all(set(job.after) <= (local | earlier) - {job.name} for job in phase.jobs)
    if workflow.on_failure is not None:
        handlers = {job.name for job in workflow.on_failure.jobs}
        assert all(set(job.after) <= handlers - {job.name} for job in workflow.on_failure.jobs)
    assert set(workflow.notify.on) <= set(NOTIFY_EVENTS)


def _check(load: Callable[[], Workflow], source: str) -> None:
    """Either a sound Workflow or a SpecError whose every line names the source; anything else
    (a traceback) fails the test by propagating."""
    try:
        outcome: Workflow | SpecError = load()
    except SpecError as error:
        outcome = error
    if isinstance(outcome, SpecError):
        assert outcome.problems
        assert all(str(problem).startswith(f"{source}: ") for problem in outcome.problems)
    else:
        _assert_sound(outcome)


def _compile(document: object) -> None:
    _check(
        lambda: workflow_from_document(document, source="fuzz.yaml", base_dir=ROOT / "workflows"), "fuzz.yaml"
    )


def test_an_after_naming_an_earlier_phase_job_is_sound() -> None:
    """The edit the fuzzer found: ``cook`` waits for ``go_home`` of the earlier phase, which loads
    (a data dependency) and keeps the IR's promises."""
    document = copy.deepcopy(BASE)
    document["phases"]["cooking"]["jobs"]["cook"]["after"] = ["go_home"]
    workflow = workflow_from_document(document, source="fuzz.yaml", base_dir=ROOT / "workflows")
    _assert_sound(workflow)
    assert workflow.phase("cooking").local_after(workflow.job("cook")) == ()


@FUZZ
@given(documents)
def test_random_documents_give_a_workflow_or_a_spec_error(document: object) -> None:
    _compile(document)


@FUZZ
@given(st.data())
def test_random_edits_of_catch_the_fish_give_a_workflow_or_a_spec_error(data: st.DataObject) -> None:
    document = copy.deepcopy(BASE)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        path = data.draw(st.sampled_from(_paths(document)[1:]))
        parent: Any = document
        for part in path[:-1]:
            parent = parent[part]
        action = data.draw(st.sampled_from(["replace", "delete", "rename"]))
        if action == "replace":
            parent[path[-1]] = data.draw(documents)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[data.draw(keys)] = parent.pop(path[-1])
        else:
            parent[path[-1]] = data.draw(st.sampled_from(WORDS))
        if not _paths(document)[1:]:
            break
    _compile(document)


@FUZZ
@given(st.data())
def test_random_edits_of_the_yaml_text_give_a_workflow_or_a_spec_error(data: st.DataObject) -> None:
    lines = CATCH_TEXT.splitlines()
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        index = data.draw(st.integers(min_value=0, max_value=len(lines) - 1))
        action = data.draw(st.sampled_from(["delete", "duplicate", "insert", "splice"]))
        if action == "delete" and len(lines) > 1:
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "insert":
            lines.insert(index, data.draw(st.text(alphabet=" \t:-[]{},&*!|>'\"#%@`?abc\n", max_size=12)))
        else:
            column = data.draw(st.integers(min_value=0, max_value=len(lines[index])))
            word = data.draw(st.sampled_from(WORDS) | st.text(max_size=4))
            lines[index] = lines[index][:column] + word + lines[index][column:]
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "spec.yaml"
        spec.write_text("\n".join(lines), encoding="utf-8")
        _check(lambda: load_workflow(spec), str(spec))
