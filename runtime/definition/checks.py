"""Stage two, the same for both formats: job names and ``after`` references, cycles, and the
chain of phases (unknown ``next``, loops, phases the run never reaches)."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.definition.dependencies import check_dependencies
from runtime.definition.draft import Draft, DraftPhase, Ref
from runtime.definition.model import EXIT_PHASE, FUNCTION_NAME_MAX, HANDLERS_PHASE, job_function_name
from runtime.definition.report import JsonPath, Report, did_you_mean, name_list
from runtime.definition.schema import is_name


def _successors(draft: Draft) -> dict[str, Ref | None]:
    following: dict[str, Ref | None] = {}
    for index, phase in enumerate(draft.phases):
        if phase.next is not None or phase.ends:
            following[phase.name] = phase.next
        elif index + 1 < len(draft.phases):
            following[phase.name] = Ref(draft.phases[index + 1].name, phase.path)
        else:
            following[phase.name] = None
    return following


def check_phase_chain(draft: Draft, report: Report) -> list[str]:
    """Unknown ``next`` names, loops and unreachable phases; returns the run order."""
    names = [phase.name for phase in draft.phases]
    following = _successors(draft)
    dangling = False
    for phase in draft.phases:
        if phase.next is not None and phase.next.name not in names:
            dangling = True
            report.add(
                phase.next.path,
                f"unknown phase {phase.next.name!r}{did_you_mean(phase.next.name, names)}; "
                f"phases: {name_list(names)}",
            )
    if dangling or not names:
        return names
    order: list[str] = []
    current: str | None = names[0]
    while current is not None and current not in order:
        order.append(current)
        step = following[current]
        if step is not None and step.name in order:
            loop = [*order[order.index(step.name) :], step.name]
            implicit = draft.phases[names.index(current)].next is None
            how = f" ({current!r} has no 'next', so the next one declared follows)" if implicit else ""
            report.add(step.path, f"phases loop: {' -> '.join(loop)}{how}; the last phase must end the run")
            break
        current = step.name if step is not None else None
    for phase in draft.phases:
        if phase.name not in order:
            report.add(
                phase.path,
                f"phase {phase.name!r} is unreachable: the run goes {' -> '.join(order)} and never gets "
                "there; name it in a 'next' or remove it",
            )
    return order


def check_jobs(draft: Draft, report: Report, order: list[str]) -> None:
    """Unique names that fit a function name, then what each job waits for and reads, by the
    run ``order`` of the phases."""
    owner: dict[str, DraftPhase] = {}
    for phase in _with_handlers(draft):
        for job in phase.jobs:
            if job.name in owner:
                report.add(
                    job.path,
                    f"job {job.name!r} is also defined in {_where(owner[job.name])}; job names must be "
                    "unique in a workflow (each names a Lambda function)",
                )
            else:
                owner[job.name] = phase
            if draft.name is not None and is_name(job.name):
                function = job_function_name(draft.name, job.name)
                if len(function) > FUNCTION_NAME_MAX:
                    room = FUNCTION_NAME_MAX - len(job_function_name(draft.name, ""))
                    report.add(
                        job.path,
                        f"job function name {function!r} is {len(function)} characters long; AWS Lambda "
                        f"allows {FUNCTION_NAME_MAX}: shorten the job name to {room} characters or fewer",
                    )
    for handlers, reserved in ((draft.handlers, HANDLERS_PHASE), (draft.exit_handlers, EXIT_PHASE)):
        if handlers is not None and any(phase.name == reserved for phase in draft.phases):
            report.add(
                ("phases", reserved),
                f"phase name {reserved!r} is where the {reserved} handlers run; rename this phase",
            )
    rank = {name: index for index, name in enumerate(order)}
    for phase in _with_handlers(draft):
        for job in phase.jobs:
            check_dependencies(job, phase, owner, rank, report)
        for cycle in _cycles(phase):
            report.add(
                cycle[0].path,
                "jobs wait for each other in a cycle: "
                + " after ".join([*(ref.waiter for ref in cycle), cycle[0].waiter])
                + "; none of them can ever start",
            )


def _with_handlers(draft: Draft) -> list[DraftPhase]:
    handlers = (draft.handlers, draft.exit_handlers)
    return draft.phases + [phase for phase in handlers if phase is not None]


def _where(phase: DraftPhase) -> str:
    return str(phase.path[0]) if phase.path in (("on_failure",), ("on_exit",)) else f"phase {phase.name!r}"


@dataclass
class _Wait:
    """One ``after`` entry seen from the job that waits."""

    waiter: str
    on: str
    path: JsonPath


def _cycles(phase: DraftPhase) -> list[list[_Wait]]:
    """One cycle per knot of jobs that wait for each other, each as the ``after`` entries that
    close it. Iterative (Kahn's algorithm), so a long chain of jobs cannot exhaust the stack."""
    waits = {
        job.name: [_Wait(job.name, ref.name, ref.path) for ref in job.after if ref.name != job.name]
        for job in phase.jobs
    }
    stuck = set(waits)
    cycles: list[list[_Wait]] = []
    while True:
        progress = True
        while progress:
            free = {name for name in stuck if not any(wait.on in stuck for wait in waits[name])}
            stuck -= free
            progress = bool(free)
        if not stuck:
            return cycles
        name = next(job.name for job in phase.jobs if job.name in stuck)
        walk: list[_Wait] = []
        while name not in [wait.waiter for wait in walk]:
            wait = next(wait for wait in waits[name] if wait.on in stuck)
            walk.append(wait)
            name = wait.on
        cycle = walk[[wait.waiter for wait in walk].index(name) :]
        cycles.append(cycle)
        stuck -= {wait.waiter for wait in cycle}
