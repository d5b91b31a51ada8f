"""The spec loader: the invalid corpus (each fixture states what it must report), the valid
fixtures, every spec in workflows/, and the seed's own state-machine object."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime.definition.loader import (
    check_specs,
    load_workflow,
    load_workflows,
    spec_files,
    workflow_from_document,
)
from runtime.definition.model import Workflow
from runtime.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]
INVALID = Path("tests/specs/invalid")
VALID = Path("tests/specs/valid")
WARNING = Path("tests/specs/warning")
WORKFLOWS = ROOT / "workflows"
EXPECT = "# expect:"


@dataclass(frozen=True)
class Expectation:
    location: str
    """A JSON path, or ``line L, column C`` for files that do not parse."""
    fragments: tuple[str, ...]


def _expectations(spec: Path) -> list[Expectation]:
    """``# expect: <location> | <fragment> | ...`` lines: in the YAML fixture itself, or in a
    ``.expect`` sidecar for JSON (which has no comments)."""
    source = spec.with_suffix(".expect") if spec.suffix == ".json" else spec
    found = []
    for line in source.read_text(encoding="utf-8").splitlines():
        if line.startswith(EXPECT):
            location, *fragments = (part.strip() for part in line[len(EXPECT) :].split("|"))
            found.append(Expectation(location, tuple(fragments)))
    return found


def _invalid_specs() -> list[Path]:
    return sorted(path for path in (ROOT / INVALID).iterdir() if path.suffix in (".yaml", ".json"))


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages name files as given; run from the root so they read like the CLI's."""
    monkeypatch.chdir(ROOT)


def test_the_invalid_corpus_is_large_and_every_fixture_states_its_expectations() -> None:
    specs = _invalid_specs()
    assert len(specs) >= 30
    assert [spec.name for spec in specs if not _expectations(spec)] == []


@pytest.mark.parametrize("spec", _invalid_specs(), ids=lambda path: path.name)
def test_invalid_spec_reports_exactly_what_its_fixture_expects(spec: Path) -> None:
    path = INVALID / spec.name
    with pytest.raises(SpecError, match=r"\S") as raised:
        load_workflow(path)
    problems = [str(problem) for problem in raised.value.problems]
    expected = _expectations(spec)
    assert len(problems) == len(expected), "\n".join(problems)
    unmatched = list(problems)
    for expectation in expected:
        prefix = f"{path}: {expectation.location}: "
        match = next(
            (
                problem
                for problem in unmatched
                if problem.startswith(prefix)
                and all(fragment in problem for fragment in expectation.fragments)
            ),
            None,
        )
        assert match is not None, f"no problem matches {expectation}; got:\n" + "\n".join(problems)
        unmatched.remove(match)


@pytest.mark.parametrize(
    "spec", sorted([*WORKFLOWS.glob("*.yaml"), *(ROOT / VALID).iterdir()]), ids=lambda path: path.name
)
def test_valid_spec_loads(spec: Path) -> None:
    workflow = load_workflow(spec)
    assert workflow.source == spec.resolve().as_posix()
    assert len(workflow.phase_order()) == len(workflow.phases) >= 1


def test_every_file_in_workflows_is_a_valid_spec() -> None:
    specs = spec_files([WORKFLOWS])
    assert {path.name for path in specs} >= {
        "catch_the_fish.yaml",
        "nightly_report.yaml",
        "order_fulfilment.yaml",
    }
    assert "workflow.schema.json" not in {path.name for path in specs}
    assert len(load_workflows([WORKFLOWS])) == len(specs)


def _graph(workflow: Workflow) -> list[tuple[str, list[tuple[str, tuple[str, ...]]]]]:
    return [(phase.name, [(job.name, job.after) for job in phase.jobs]) for phase in workflow.phase_order()]


def test_the_seed_state_machine_object_converts_to_the_same_graph_as_catch_the_fish() -> None:
    seed = load_workflow(VALID / "seed_catch_the_fish.json")
    spec = load_workflow(WORKFLOWS / "catch_the_fish.yaml")
    assert seed.name == spec.name == "catch_the_fish"
    assert _graph(seed) == _graph(spec)
    assert [phase.next for phase in seed.phases] == [phase.next for phase in spec.phases] == [None, None]
    assert _graph(seed)[0][1][-1] == ("go_home", ("catch_fish",))


def test_seed_phases_follow_next_and_a_job_started_by_two_steps_joins_them() -> None:
    workflow = load_workflow(VALID / "seed_reordered.yaml")
    assert workflow.name == "reordered_run"
    assert _graph(workflow) == [
        ("first", [("a", ())]),
        ("second", [("b", ())]),
        ("third", [("c1", ()), ("c2", ()), ("c3", ("c1", "c2"))]),
    ]


def test_yaml_1_1_booleans_stay_strings_where_the_spec_expects_names() -> None:
    workflow = load_workflow(VALID / "yaml11_on_key.yaml")
    assert workflow.notify.on == ("failed", "workflow_succeeded")
    assert [job.name for job in workflow.jobs()] == ["y", "n", "off"]
    assert dict(workflow.job("n").env) == {"VERBOSE": "yes", "DRY_RUN": "no"}


def test_defaults_apply_unless_a_job_overrides_them_and_merge_keys_work() -> None:
    workflow = load_workflow(VALID / "anchors_and_merge.yaml")
    big, bigger = workflow.jobs()
    assert (big.memory, big.timeout, big.retries) == (2048, 300, 1)
    assert (bigger.memory, bigger.timeout, bigger.after) == (4096, 300, ("big",))


def test_settings_defaults_env_merge_and_code_resolve_against_the_spec_folder() -> None:
    workflow = load_workflow(WORKFLOWS / "nightly_report.yaml")
    extract = workflow.job("extract_orders")
    assert extract.code == (WORKFLOWS / "jobs" / "extract_orders.py").resolve().as_posix()
    assert (extract.memory, extract.timeout, extract.retries) == (512, 300, 3)
    assert (
        workflow.job("archive_orders").when == "input.mode == 'full' && results.extract_orders.orders > `0`"
    )
    assert dict(workflow.job("publish").env) == {"REPORT_BUCKET": "reports-example"}
    assert workflow.schedule == "cron(0 3 * * ? *)"
    assert workflow.schedule_input == {"mode": "full"}


def test_a_job_without_settings_gets_the_model_defaults() -> None:
    workflow = workflow_from_document({"workflow": "w", "phases": {"p": {"jobs": {"a": {}}}}})
    job = workflow.job("a")
    assert (job.memory, job.timeout, job.retries, job.code, job.when, dict(job.env)) == (
        256,
        60,
        2,
        None,
        None,
        {},
    )
    assert workflow.notify.on == ("failed", "workflow_succeeded", "workflow_failed")
    assert workflow.source is None


def test_problems_of_every_file_are_reported_together(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("workflow: a\nphases: {}\n")
    (tmp_path / "b.json").write_text('{"workflow": "b"}')
    with pytest.raises(SpecError, match="no phases") as raised:
        load_workflows([tmp_path])
    assert [str(problem).split(":")[0] for problem in raised.value.problems] == [
        str(tmp_path / "a.yaml"),
        str(tmp_path / "b.json"),
    ]


def test_two_files_with_one_workflow_id_clash(tmp_path: Path) -> None:
    for name in ("one.yaml", "two.yml"):
        (tmp_path / name).write_text("workflow: same\nphases: {p: {jobs: {a: {}}}}\n")
    with pytest.raises(
        SpecError, match=r"two\.yml: \$\.workflow: workflow id 'same' is also used by .*one\.yaml"
    ):
        load_workflows([tmp_path])


def test_a_folder_without_specs_and_a_missing_path_are_problems(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no spec files") as raised:
        spec_files([tmp_path, tmp_path / "missing.yaml"])
    assert len(raised.value.problems) == 2
    assert "no such file or folder" in str(raised.value.problems[1])


def _billion_laughs() -> bytes:
    """Each line refers ten times to the one before: 10**9 values from a few hundred bytes."""
    lines = ["l0: &l0 [a, a, a, a, a, a, a, a, a, a]"]
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 9)]
    return "\n".join(lines).encode()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r": \$: empty file"),
        (b"\xff\xfeworkflow", "not UTF-8 text"),
        (b"workflow: w\n\tphases: {}\n", "invalid YAML"),
        (b"a: &a [*a, *a]\n", "not a tree"),
        (b"x: \x07\n", "invalid YAML"),
        (b"[" * 500, "invalid YAML"),
        (_billion_laughs(), "expands to more than"),
    ],
    ids=[
        "empty",
        "not-utf8",
        "tab-indent",
        "recursive-alias",
        "control-char",
        "deep-nesting",
        "billion-laughs",
    ],
)
def test_hostile_or_broken_files_give_a_spec_error(tmp_path: Path, content: bytes, message: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(content)
    with pytest.raises(SpecError, match=message):
        load_workflow(spec)


def test_a_directory_given_as_a_spec_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_workflow(tmp_path)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({1: "x"}, r"key 1 is an integer; keys must be strings"),
        (
            {"workflow": "w", "phases": {"p": {"jobs": {"a": {"memory": float("nan")}}}}},
            "not a finite number",
        ),
        ({"workflow": "w", "schedule_input": {"when": object()}}, "is not JSON data"),
        ("workflow: w", "the top level must be a mapping"),
    ],
    ids=["int-key", "nan", "object", "string"],
)
def test_documents_handed_in_directly_must_be_json_data(document: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        workflow_from_document(document)


def test_a_document_that_contains_itself_is_reported() -> None:
    looping: dict[str, object] = {"workflow": "w"}
    looping["phases"] = looping
    with pytest.raises(SpecError, match="contains itself"):
        workflow_from_document(looping)


def test_a_long_chain_of_jobs_loads_without_exhausting_the_stack() -> None:
    jobs = {f"j{index}": {"after": [f"j{index - 1}"]} if index else {} for index in range(3000)}
    jobs["j0"] = {"after": ["j2999"]}
    with pytest.raises(SpecError, match=r"cycle: j0 after j2999 after j2998"):
        workflow_from_document({"workflow": "w", "phases": {"p": {"jobs": jobs}}})


@pytest.mark.parametrize(
    ("condition", "suggestion"),
    [
        ("input.n == -3", "write 'input.n == `-3`'"),
        ("input.size >= 1.5e3", "write 'input.size >= `1.5e3`'"),
        ("input.xs[1:2] == input.ys[?v > 2]", "write 'input.xs[1:2] == input.ys[?v > `2`]'"),
        ("input.n > 1 &&", "e.g. `0.8`"),
    ],
    ids=["negative", "exponent", "slice-and-filter", "other-errors-too"],
)
def test_a_bare_number_in_a_condition_is_shown_with_backticks(condition: str, suggestion: str) -> None:
    document = {"workflow": "w", "phases": {"p": {"jobs": {"a": {"when": condition}}}}}
    with pytest.raises(SpecError, match="a number in JMESPath is a JSON literal in backticks") as raised:
        workflow_from_document(document)
    assert suggestion in str(raised.value)


def _folder_with_a_config_file(folder: Path) -> Path:
    (folder / "one.yaml").write_text("workflow: one\nphases: {p: {jobs: {a: {}}}}\n")
    (folder / "settings.yaml").write_text("region: eu-west-1\nbucket: my-bucket\n")
    (folder / "tags.json").write_text('{"team": "data"}')
    (folder / "hosts.yml").write_text("- a.example.com\n- b.example.com\n")
    return folder


def test_files_in_a_folder_that_are_not_specs_are_skipped(tmp_path: Path) -> None:
    folder = _folder_with_a_config_file(tmp_path)
    assert [workflow.name for workflow in load_workflows([folder])] == ["one"]
    assert spec_files([folder]) == [folder / "one.yaml"]


def test_a_file_that_does_not_parse_in_a_folder_is_still_reported(tmp_path: Path) -> None:
    folder = _folder_with_a_config_file(tmp_path)
    (folder / "two.yaml").write_text("workflow: two\n\tphases: {}\n")
    with pytest.raises(SpecError, match="invalid YAML") as raised:
        load_workflows([folder])
    assert [str(problem).split(":")[0] for problem in raised.value.problems] == [str(folder / "two.yaml")]


def test_a_file_named_on_its_own_is_a_spec_and_each_problem_is_reported_once(tmp_path: Path) -> None:
    folder = _folder_with_a_config_file(tmp_path)
    with pytest.raises(SpecError, match="missing required key") as raised:
        load_workflows([folder / "settings.yaml"])
    messages = [problem.message for problem in raised.value.problems]
    assert messages.count("missing required key 'workflow'") == 1
    assert messages.count("missing required key 'phases'") == 1
    assert len(messages) == 4


def test_a_folder_of_only_other_files_has_no_specs(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text("region: eu-west-1\n")
    with pytest.raises(SpecError, match=r"\$: no spec files"):
        load_workflows([tmp_path])


def test_imports_nothing_provides_are_warnings_with_their_lines() -> None:
    check = check_specs([WARNING / "imports.yaml"])
    assert [workflow.name for workflow in check.workflows] == ["reports"]
    assert check.problems == ()
    assert [(str(problem.path), problem.line) for problem in check.warnings] == [
        ("$.phases.build.jobs.report.code", 7),
        ("$.phases.build.jobs.single.code", 10),
    ]
    report, single = (problem.message for problem in check.warnings)
    assert report.startswith("'jobs/report/handler.py' imports 'pandas' at line 9, which neither")
    assert "list it in jobs/report/requirements.txt" in report
    assert single.startswith("'jobs/single.py' imports 'layout_helpers' at line 5")
    assert "only 'jobs/single.py' is bundled" in single


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("def handler(event, context):\n    return {}\n", None),
        ("def handler(*args):\n    return {}\n", None),
        ("def handler(event, context, extra=None, *, flag=False):\n    return {}\n", None),
        ("from layout import handler\n", None),
        ("handler = print\n", None),
        ("def handler(event, context, extra):\n    return {}\n", "requires 3 positional parameters"),
        (
            "def handler(event, context, *, flag):\n    return {}\n",
            "requires the keyword-only parameters flag",
        ),
        ("async def handler(event, context):\n    return {}\n", "is 'async def' (line 1)"),
        ("def hander(event, context):\n    return {}\n", "(did you mean 'hander'?)"),
        (
            "def main():\n    def handler(event, context):\n        return {}\n",
            "defines no top-level handler",
        ),
        ("x = '\\x00'\0\n", "cannot be compiled"),
    ],
    ids=[
        "event-context",
        "varargs",
        "optional-extras",
        "imported",
        "assigned",
        "three-required",
        "keyword-only",
        "async",
        "misspelt",
        "nested",
        "null-byte",
    ],
)
def test_the_handler_must_take_event_and_context(tmp_path: Path, source: str, problem: str | None) -> None:
    (tmp_path / "job.py").write_text(source)
    document = {"workflow": "w", "phases": {"p": {"jobs": {"a": {"code": "job.py"}}}}}
    if problem is None:
        assert workflow_from_document(document, base_dir=tmp_path).job("a").code is not None
    else:
        with pytest.raises(SpecError, match=re.escape(problem)):
            workflow_from_document(document, base_dir=tmp_path)
