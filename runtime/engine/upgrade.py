"""``redrive --upgrade``, as the engine sees it: whether an ended run can move to another
definition (and the versions that go with it) and what its jobs become there. Pure.

A run can move when what it did still means the same under the new definition: every job that
succeeded exists with the same phase and ``after`` (its output is what the jobs after it read),
the phase it goes on from exists, and no job is new in a phase the run has completed (nothing
would ever run it, and the jobs after it would wait forever).
"""

from __future__ import annotations

from runtime.definition.model import Workflow
from runtime.documents.run import JobRecord, Run
from runtime.statuses import JobState


def upgrade_problems(run: Run, definition: Workflow) -> list[str]:
    """Why ``run`` cannot move to ``definition``; empty when it can."""
    if definition.name != run.workflow:
        return [f"the definition is of workflow {definition.name!r}, the run of {run.workflow!r}"]
    problems = []
    current = {job.name: job for job in definition.jobs()}
    for name, record in run.jobs.items():
        if record.state != JobState.SUCCEEDED:
            continue
        before, now = run.definition.job(name), current.get(name)
        if now is None:
            problems.append(f"job {name!r} succeeded, and the current definition has no such job")
        elif now.phase != before.phase:
            problems.append(f"job {name!r} succeeded in phase {before.phase!r}, and now is in {now.phase!r}")
        elif tuple(now.after) != tuple(before.after):
            problems.append(
                f"job {name!r} succeeded after [{', '.join(before.after)}], and now runs after "
                f"[{', '.join(now.after)}]"
            )
    phase = run.phase if run.failure is None else run.failure.phase
    if phase not in {candidate.name for candidate in definition.all_phases()}:
        problems.append(f"the run goes on from phase {phase!r}, which the current definition does not have")
    for job in definition.jobs():
        if job.name not in run.jobs and job.phase in run.completed_by:
            problems.append(f"job {job.name!r} is new in phase {job.phase!r}, which this run has completed")
    return problems


def upgraded_jobs(run: Run, definition: Workflow) -> dict[str, JobRecord]:
    """The run's job records under ``definition``: each job keeps its record, a new job is
    pending, and a job no longer defined (none of which succeeded) is dropped."""
    return {job.name: run.jobs.get(job.name, JobRecord()) for job in definition.jobs()}
