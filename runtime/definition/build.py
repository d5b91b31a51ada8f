"""Assembling the IR: a document through both stages into a frozen ``Workflow``, for one
document or one file."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from runtime.definition.canonical import read_spec
from runtime.definition.checks import check_jobs, check_phase_chain
from runtime.definition.draft import Draft, DraftPhase
from runtime.definition.input_schema import check_schedule_input
from runtime.definition.model import EXIT_PHASE, HANDLERS_PHASE, Job, Phase, Workflow
from runtime.definition.reading import SourceFile, check_json_data, read_spec_file
from runtime.definition.report import Report, kind_of
from runtime.definition.schema import schema_problems
from runtime.definition.seed import read_seed
from runtime.errors import SpecError


def _build(draft: Draft, order: list[str], source: str | None, in_run_order: bool) -> Workflow:
    """``in_run_order`` (the seed) lists phases as they run with no explicit ``next``; a spec keeps
    its declaration order and its ``next`` as written."""
    by_name = {phase.name: phase for phase in draft.phases}
    drafts = [by_name[name] for name in order] if in_run_order else draft.phases
    phases = tuple(
        Phase(
            name=phase.name,
            next=None if in_run_order or phase.next is None else phase.next.name,
            jobs=tuple(
                Job(
                    name=job.name,
                    phase=phase.name,
                    after=tuple(ref.name for ref in job.after),
                    **job.settings,
                )
                for job in phase.jobs
            ),
        )
        for phase in drafts
    )
    assert draft.name is not None  # a draft without problems has its name
    return Workflow(
        name=draft.name,
        phases=phases,
        on_failure=_handlers(draft.handlers, HANDLERS_PHASE),
        on_exit=_handlers(draft.exit_handlers, EXIT_PHASE),
        source=source,
        **draft.settings,
    )


def _handlers(handlers: DraftPhase | None, name: str) -> Phase | None:
    """The ``on_failure`` or ``on_exit`` jobs as the phase ``name`` they run in."""
    if handlers is None:
        return None
    return Phase(
        name=name,
        jobs=tuple(
            Job(name=job.name, phase=name, after=tuple(ref.name for ref in job.after), **job.settings)
            for job in handlers.jobs
        ),
    )


def compile_document(document: object, report: Report, base_dir: Path, source: str | None) -> Workflow | None:
    """The workflow, or ``None`` with the reasons in ``report``."""
    check_json_data(document, (), report, frozenset())
    if report.problems:
        return None
    if not isinstance(document, dict):
        report.add(
            (), f"the top level must be a mapping with 'workflow' and 'phases', got {kind_of(document)}"
        )
        return None
    schema_problems(document, report)
    is_seed = "purposeId" in document
    draft = read_seed(document, report) if is_seed else read_spec(document, report, base_dir)
    order = check_phase_chain(draft, report)
    check_jobs(draft, report, order)
    if "schedule" in draft.settings:
        check_schedule_input(draft.settings.get("input_schema"), draft.settings.get("schedule_input"), report)
    if report.problems:
        return None
    return _build(draft, order, source, in_run_order=is_seed)


def compile_file(file: SourceFile) -> Workflow | None:
    """A file's workflow; ``code`` paths resolve against the file's folder."""
    if file.report.problems:
        return None
    resolved = file.path.resolve()
    return compile_document(file.document, file.report, resolved.parent, resolved.as_posix())


def workflow_from_document(
    document: object, *, source: str = "<document>", base_dir: Path | None = None
) -> Workflow:
    """Compile an already-parsed spec (or seed object); ``source`` names it in messages and
    ``code`` paths resolve against ``base_dir`` (default: the current folder)."""
    report = Report(source)
    workflow = compile_document(document, report, (base_dir or Path.cwd()).resolve(), None)
    if workflow is None:
        raise SpecError(report.problems)
    return workflow


def load_workflow(path: str | PathLike[str]) -> Workflow:
    """Load one spec file (YAML, JSON, or the seed's state-machine object in either)."""
    file = read_spec_file(Path(path))
    workflow = compile_file(file)
    if workflow is None:
        raise SpecError(file.report.problems)
    return workflow
