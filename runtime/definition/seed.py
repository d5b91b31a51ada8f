"""The seed blog post's state-machine object (``purposeId``, ``steps``, ``waitFor``), read into
the same draft as a canonical spec."""

from __future__ import annotations

import re
from typing import Any

from runtime.definition.draft import Draft, DraftJob, DraftPhase, Ref, known_fields, mapping, name_refs
from runtime.definition.report import JsonPath, Report, did_you_mean, name_list
from runtime.definition.schema import defs, is_name

SEED_END = "end"
"""What a seed phase's ``next`` says when the run ends after it."""


def _seed_workflow_id(purpose_id: str) -> str:
    """The seed names workflows like ``catch-the-fish``; ours are ``catch_the_fish``."""
    return re.sub(r"[-\s]+", "_", purpose_id.strip().lower())


def _entry_step(phase: str, first: bool) -> str:
    """The seed starts a run with a ``success`` of a job named after the first phase, and each
    later phase with one named ``<phase>Start``."""
    return phase if first else f"{phase}Start"


def read_seed(document: dict[str, Any], report: Report) -> Draft:
    seed = known_fields(document, "seed")
    name = _seed_name(seed.get("purposeId"), report)
    raw_phases = mapping(seed.get("phases"))
    started = {
        phase_name: _started_jobs(phase_name, known_fields(raw, "seed_phase"))
        for phase_name, raw in raw_phases.items()
    }
    owner = {job: phase_name for phase_name, jobs in started.items() for job in jobs}
    phases = []
    for index, (phase_name, raw_phase) in enumerate(raw_phases.items()):
        path: JsonPath = ("phases", phase_name)
        phase_fields = known_fields(raw_phase, "seed_phase")
        written_next = phase_fields.get("next")
        phase = DraftPhase(phase_name, path, ends=written_next == SEED_END)
        if is_name(written_next) and written_next != SEED_END:
            phase.next = Ref(written_next, (*path, "next"))
        if phase_name == SEED_END:
            report.add(
                path, f"a phase cannot be named {SEED_END!r}: the seed's 'next' uses it to end the run"
            )
        entry = _entry_step(phase_name, index == 0)
        jobs = started[phase_name]
        phase.jobs = [DraftJob(job, where) for job, where in jobs.items()]
        by_name = {job.name: job for job in phase.jobs}
        _check_seed_steps(phase, entry, mapping(phase_fields.get("steps")), by_name, owner, report)
        _check_wait_for(path, phase_fields.get("waitFor"), list(jobs), report)
        phases.append(phase)
    return Draft(name, phases)


def _seed_name(purpose_id: object, report: Report) -> str | None:
    if not isinstance(purpose_id, str) or not purpose_id:
        return None
    name = _seed_workflow_id(purpose_id)
    rule = defs()["spec"]["properties"]["workflow"]
    if not re.fullmatch(rule["pattern"], name) or len(name) > rule["maxLength"]:
        report.add(
            ("purposeId",),
            f"purposeId {purpose_id!r} cannot become a workflow id: {name!r} is not "
            f"{rule['pattern']} with at most {rule['maxLength']} characters",
        )
        return None
    return name


def _started_jobs(phase: str, fields: dict[str, Any]) -> dict[str, JsonPath]:
    """The jobs a phase runs: every name some step starts, where it is first written."""
    jobs: dict[str, JsonPath] = {}
    for trigger, raw_step in mapping(fields.get("steps")).items():
        step_path: JsonPath = ("phases", phase, "steps", trigger, "jobs")
        for ref in name_refs(known_fields(raw_step, "seed_step").get("jobs"), step_path):
            jobs.setdefault(ref.name, ref.path)
    return jobs


def _check_seed_steps(
    phase: DraftPhase,
    entry: str,
    steps: dict[str, Any],
    jobs: dict[str, DraftJob],
    owner: dict[str, str],
    report: Report,
) -> None:
    """Turns "step T starts J" into "J runs after T", and checks each step's key."""
    other_style = phase.name if entry != phase.name else f"{phase.name}Start"
    if entry not in steps:
        if other_style in steps and other_style not in jobs:
            which = (
                "the first phase's entry step is keyed by its name"
                if entry == phase.name
                else ("a later phase's entry step is keyed '<phase>Start'")
            )
            report.add(
                (*phase.path, "steps", other_style), f"entry step {other_style!r} must be {entry!r}: {which}"
            )
        else:
            report.add(
                (*phase.path, "steps"),
                f"phase {phase.name!r} has no entry step {entry!r}: no job would start",
            )
    if entry in jobs:
        report.add(jobs[entry].path, f"job {entry!r} has the name of the phase's entry step; rename it")
    roots: set[str] = set()
    for trigger, raw_step in steps.items():
        step_path: JsonPath = (*phase.path, "steps", trigger)
        started = name_refs(known_fields(raw_step, "seed_step").get("jobs"), (*step_path, "jobs"))
        if trigger == entry:
            roots.update(ref.name for ref in started)
        elif trigger == other_style and trigger not in jobs:
            continue
        elif trigger in jobs:
            for ref in started:
                jobs[ref.name].after.append(Ref(trigger, step_path))
        elif trigger in owner:
            report.add(
                step_path,
                f"step {trigger!r} is a job of phase {owner[trigger]!r}; a step can follow only a job of "
                f"its own phase {phase.name!r} or the entry step {entry!r}",
            )
        elif is_name(trigger):
            candidates = [entry, *jobs]
            report.add(
                step_path,
                f"step {trigger!r} is neither the entry step {entry!r} nor a job that phase "
                f"{phase.name!r} starts{did_you_mean(trigger, candidates)}",
            )
    for name in sorted(roots):
        if jobs[name].after:
            report.add(
                jobs[name].after[0].path,
                f"job {name!r} is started by the entry step {entry!r} and also after "
                f"{name_list(ref.name for ref in jobs[name].after)}; list it in one place",
            )


def _check_wait_for(path: JsonPath, wait_for: object, started: list[str], report: Report) -> None:
    if not isinstance(wait_for, list) or not all(isinstance(item, str) for item in wait_for):
        return
    unfinished = [job for job in started if job not in wait_for]
    never = [job for job in wait_for if job not in started]
    if unfinished or never:
        reasons = []
        if unfinished:
            reasons.append(f"{name_list(unfinished)} run but are not waited for")
        if never:
            reasons.append(f"{name_list(never)} are waited for but no step starts them")
        report.add(
            (*path, "waitFor"),
            f"waitFor {name_list(wait_for)} disagrees with the jobs the steps start {name_list(started)}: "
            + "; ".join(reasons),
        )
