"""What one job may wait for and read: ``after`` names a job of its own phase or of an earlier
one (a failure handler: other handlers only), ``join`` needs ``after``, a handler cannot
``allow_failure``, and ``when`` and ``for_each`` read only results the job gets."""

from __future__ import annotations

from collections.abc import Mapping

from runtime.definition.draft import DraftJob, DraftPhase
from runtime.definition.report import Report, did_you_mean, name_list


def _is_handlers(phase: DraftPhase) -> bool:
    return phase.path in (("on_failure",), ("on_exit",))


def _later(phase: DraftPhase) -> str:
    return str(phase.path[0]) if _is_handlers(phase) else f"the later phase {phase.name!r}"


def check_dependencies(
    job: DraftJob, phase: DraftPhase, owner: Mapping[str, DraftPhase], rank: Mapping[str, int], report: Report
) -> None:
    """``owner``: the phase (or the handlers) that defines each job; ``rank``: each phase's place
    in the run order."""
    handler = _is_handlers(phase)
    for ref in job.after:
        other = owner.get(ref.name)
        if ref.name == job.name:
            report.add(ref.path, f"job {job.name!r} waits for itself, so it can never start")
        elif other is None:
            known = [name for name, where in owner.items() if _is_handlers(where) == handler]
            report.add(ref.path, f"unknown job {ref.name!r}{did_you_mean(ref.name, known)}")
        elif other is phase:
            continue
        elif handler:
            report.add(
                ref.path,
                f"{phase.path[0]} job {job.name!r} can wait only for other {phase.path[0]} jobs, "
                f"and {ref.name!r} "
                f"is a job of phase {other.name!r}: the outputs of every job that succeeded are in a "
                "handler's results anyway",
            )
        elif _is_handlers(other):
            report.add(
                ref.path,
                f"{ref.name!r} is an {other.path[0]} handler, which runs only once the run has "
                f"{'failed' if other.path == ('on_failure',) else 'ended'}; a "
                "workflow job cannot wait for it",
            )
        elif rank.get(other.name, -1) > rank.get(phase.name, -1):
            report.add(
                ref.path,
                f"job {ref.name!r} belongs to the later phase {other.name!r}; a job can wait only for "
                f"jobs of its own phase {phase.name!r} or of an earlier one (phases run one after the other)",
            )
    if "join" in job.settings and not job.after:
        report.add(
            (*job.path, "join"),
            f"'join' has no effect without 'after': job {job.name!r} waits for nothing; name the jobs "
            "it joins in 'after' or remove 'join'",
        )
    if "depends" in job.settings:
        _check_depends(job, report)
    if "fails_run" in job.settings and phase.path != ("on_exit",):
        report.add(
            (*job.path, "fails_run"),
            f"only an exit handler (a job of on_exit) can set fails_run; job {job.name!r} "
            + (
                "fails the run by failing, unless it has allow_failure"
                if not handler
                else "is a failure handler, whose failure is recorded while the run ends failed anyway"
            )
            + "; remove it",
        )
    if handler and "allow_failure" in job.settings:
        report.add(
            (*job.path, "allow_failure"),
            f"{'a failure' if phase.path == ('on_failure',) else 'an exit'} handler cannot set "
            "allow_failure: a handler that fails is recorded and the "
            "other handlers run anyway; remove it",
        )
    _check_reads(job, phase, owner, rank, report)


def _check_depends(job: DraftJob, report: Report) -> None:
    """``depends`` decides over the jobs in ``after`` and only them, in place of ``join``."""
    path = (*job.path, "depends")
    after = [ref.name for ref in job.after]
    if not after:
        report.add(
            path,
            f"'depends' has nothing to decide over: job {job.name!r} waits for nothing; name the "
            "jobs it reads in 'after'",
        )
        return
    if "join" in job.settings:
        report.add(
            (*job.path, "join"),
            f"job {job.name!r} has both 'join' and 'depends': 'depends' decides whether it runs; "
            "remove one of them",
        )
    for name in job.depends_reads:
        if name not in after:
            report.add(
                path,
                f"'depends' reads jobs.{name}, but {name!r} is not in the 'after' of {job.name!r} "
                f"({name_list(after)}){did_you_mean(name, after)}; 'depends' sees only the jobs "
                "in 'after'",
            )


def _check_reads(
    job: DraftJob, phase: DraftPhase, owner: Mapping[str, DraftPhase], rank: Mapping[str, int], report: Report
) -> None:
    handler = _is_handlers(phase)
    after = [ref.name for ref in job.after]
    earlier = [
        name
        for name, where in owner.items()
        if not _is_handlers(where)
        and (handler or (where is not phase and rank.get(where.name, -1) < rank.get(phase.name, -1)))
    ]
    for key, member in (
        [("when", name) for name in job.when_reads]
        + [("for_each", name) for name in job.for_each_reads]
        + [("wait", name) for name in job.wait_reads]
        + [("workflow", name) for name in job.workflow_reads]
    ):
        path = (*job.path, key)
        if member in after or member in earlier:
            continue
        if member not in owner:
            report.add(
                path,
                f"{key!r} reads results.{member}, but there is no job {member!r}"
                f"{did_you_mean(member, [*after, *earlier])}",
            )
        elif owner[member] is not phase:
            report.add(
                path,
                f"{key!r} reads results.{member}, but {member!r} runs in {_later(owner[member])}, after "
                f"job {job.name!r}: its result is not there yet",
            )
        else:
            report.add(
                path,
                f"{key!r} reads results.{member}, but {member!r} is neither in the 'after' of {job.name!r} "
                f"({name_list(after)}) nor in an earlier phase, so its result is not there yet; add it "
                "to 'after'",
            )
