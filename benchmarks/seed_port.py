"""A faithful Python port of the seed's state-machine and orchestrator jobs (shared/seed/), the
baseline the engine is measured and tested against.

Kept as the seed wrote it: the state-machine job reads the run, pushes the finished job into the
phase in memory and ``$set``s the whole phase back (the read-modify-write that loses completions
when parallel jobs finish together), and the orchestrator reads the state again to find the next
jobs. Two seed bugs are fixed so the port runs at all: its orchestrator read the
``pipeline-state-machines`` collection and ``state[currentPhase]`` instead of
``state-machines`` and ``state.phases[currentPhase]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.database import Database

from runtime.definition.model import Workflow

END = "end"


def seed_state_machine(workflow: Workflow, state_id: str) -> dict[str, Any]:
    """The seed's state-machine object for ``workflow``: the first phase's entry step is keyed by
    the phase name, later ones by ``<phase>Start``; a step keyed by a job lists the jobs after it."""
    order = workflow.phase_order()
    phases: dict[str, Any] = {}
    for index, phase in enumerate(order):
        entry = phase.name if index == 0 else f"{phase.name}Start"
        steps: dict[str, Any] = {entry: {"jobs": [job.name for job in phase.roots]}}
        for job in phase.jobs:
            dependents = [d.name for d in phase.dependents(job.name)]
            if dependents:
                steps[job.name] = {"jobs": dependents}
        phases[phase.name] = {
            "steps": steps,
            "finished": [],
            "next": order[index + 1].name if index + 1 < len(order) else END,
            "waitFor": [job.name for job in phase.jobs],
        }
    return {"_id": state_id, "purposeId": workflow.name, "currentPhase": order[0].name, "phases": phases}


class SeedStateMachineJob:
    """Step 3 of the seed: record a success in the state machine."""

    def __init__(self, database: Database[dict[str, Any]]) -> None:
        self.states = database["state-machines"]
        self.statuses = database["statuses"]

    def handle(self, document: Mapping[str, Any]) -> None:
        state = self.states.find_one({"_id": document["stateId"]})
        if state is None or state["currentPhase"] == END:
            return
        current_phase = state["phases"][state["currentPhase"]]
        current_phase["finished"].append(document["job"])
        self.states.find_one_and_update(
            {"_id": document["stateId"]}, {"$set": {f"phases.{state['currentPhase']}": current_phase}}
        )
        remaining = [job for job in current_phase["waitFor"] if job not in current_phase["finished"]]
        if not remaining:
            self.states.find_one_and_update(
                {"_id": document["stateId"]}, {"$set": {"currentPhase": current_phase["next"]}}
            )
            if current_phase["next"] != END:
                start = {key: value for key, value in document.items() if key != "_id"}
                start.update(job=f"{current_phase['next']}Start", status="success")
                self.statuses.insert_one(start)


class SeedOrchestratorJob:
    """Step 4 of the seed: find the jobs that follow the one that succeeded."""

    def __init__(self, database: Database[dict[str, Any]]) -> None:
        self.states = database["state-machines"]

    def handle(self, document: Mapping[str, Any]) -> list[str]:
        state = self.states.find_one({"_id": document["stateId"]})
        if state is None or not document.get("stateId") or state["currentPhase"] == END:
            return []
        current_phase = state["phases"].get(state["currentPhase"])
        if not current_phase:
            return []
        step = current_phase["steps"].get(document["job"])
        return list(step["jobs"]) if step and step.get("jobs") else []
