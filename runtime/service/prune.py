"""``prune``: delete the job function versions no running run invokes, keeping the newest of
each function, and the functions a deploy retained for jobs no longer in the spec once no running
run invokes them (docs/operating.md, "Versions and deploys").

The order is what makes it safe against runs starting meanwhile. The versions are listed first
and the running runs' version maps read after: a run whose start recorded its map before that
read is seen, and a run that starts after it was pinned to the versions its deploy published,
the newest of each function, which are kept (or, published after the listing, not listed at
all). So no version a running run may invoke is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from runtime.definition.model import Workflow, job_function_name, job_function_prefix
from runtime.documents.deployment import Deployment
from runtime.errors import RunError
from runtime.ports import FunctionVersions


class RunningDeployments(Protocol):
    def running_deployments(self, workflow: str) -> list[Deployment]:
        """The version maps of the workflow's running runs."""


@dataclass(frozen=True, kw_only=True)
class Pruned:
    versions: tuple[tuple[str, int], ...]
    """(function, version) deleted, or that would be with ``dry_run``."""
    functions: tuple[str, ...]
    """Functions of jobs no longer in the spec, deleted whole."""
    kept_for_runs: tuple[tuple[str, int], ...]
    """Versions older than the newest kept only because a running run invokes them."""


def _function_and_version(qualified: str) -> tuple[str, int] | None:
    """``arn:...:function:<name>:<version>`` -> (name, version); None for anything else (a local
    snapshot's name, an unqualified one)."""
    head, _, version = qualified.rpartition(":")
    name = head.rpartition(":function:")[2]
    return (name, int(version)) if version.isdigit() and ":function:" in head else None


def prune_versions(
    functions: FunctionVersions,
    runs: RunningDeployments,
    definition: Workflow,
    keep: int,
    *,
    dry_run: bool = False,
) -> Pruned:
    """Prune the job functions of ``definition``'s workflow, keeping the newest ``keep`` versions
    of each function of a job it defines (at least 1: new runs start on the newest)."""
    if keep < 1:
        raise RunError(f"--keep must be at least 1 (runs start on the newest version), got {keep}")
    listed = {
        name: functions.versions(name)
        for name in functions.function_names(job_function_prefix(definition.name))
    }
    # Only now, after the listing: see the module's docstring.
    referenced = {
        pair
        for deployment in runs.running_deployments(definition.name)
        for qualified in deployment.functions.values()
        if (pair := _function_and_version(qualified)) is not None
    }
    current = {job_function_name(definition.name, job.name) for job in definition.jobs() if job.runs_code}
    versions: list[tuple[str, int]] = []
    whole: list[str] = []
    kept: list[tuple[str, int]] = []
    for name, numbers in sorted(listed.items()):
        used = {version for function, version in referenced if function == name}
        if name not in current and not used:
            whole.append(name)
            continue
        newest = set(sorted(numbers)[-keep:]) if name in current else set()
        for number in sorted(numbers):
            if number in newest:
                continue
            if number in used:
                kept.append((name, number))
            else:
                versions.append((name, number))
    if not dry_run:
        for name, number in versions:
            functions.delete_version(name, number)
        for name in whole:
            functions.delete_function(name)
    return Pruned(versions=tuple(versions), functions=tuple(whole), kept_for_runs=tuple(kept))


@dataclass(frozen=True, kw_only=True)
class PrunedLayers:
    versions: tuple[tuple[str, int], ...]
    """(layer, version) deleted, or that would be with ``dry_run``."""
    kept_in_use: tuple[tuple[str, int], ...]
    """Versions older than the newest kept only because a function version is configured with them."""


def _layer_and_version(arn: str) -> tuple[str, int] | None:
    """``arn:...:layer:<name>:<version>`` -> (name, version); None for anything else."""
    head, _, version = arn.rpartition(":")
    name = head.rpartition(":layer:")[2]
    return (name, int(version)) if version.isdigit() and ":layer:" in head else None


def prune_layers(
    functions: FunctionVersions, definition: Workflow, keep: int, *, dry_run: bool = False
) -> PrunedLayers:
    """Prune the layers ``definition``'s job functions use (the app's dependency layer, shared by
    every workflow): delete the versions no version of any function in the account is configured
    with, keeping the newest ``keep``. A run that has not ended invokes function versions (kept by
    ``prune_versions``), and each keeps its layer version, so no layer version a run may still
    load is deleted. The versions are listed before the functions' configurations are read: a
    version published meanwhile is not listed, and a function moved off a version meanwhile keeps
    it in the retained versions it had. Run it after ``prune_versions``, which frees the layer
    versions only the deleted function versions used; a dry run counts those as still in use."""
    if keep < 1:
        raise RunError(f"--keep must be at least 1 (functions are deployed with the newest), got {keep}")
    ours = {
        reference[0]
        for name in functions.function_names(job_function_prefix(definition.name))
        for arn in functions.layer_references(name)
        if (reference := _layer_and_version(arn)) is not None
    }
    listed = {layer: functions.layer_versions(layer) for layer in sorted(ours)}
    # Only now, after the listing.
    used = {
        reference
        for name in functions.function_names("")
        for arn in functions.layer_references(name)
        if (reference := _layer_and_version(arn)) is not None and reference[0] in ours
    }
    versions: list[tuple[str, int]] = []
    kept: list[tuple[str, int]] = []
    for layer, numbers in listed.items():
        newest = set(sorted(numbers)[-keep:])
        for number in sorted(numbers):
            if number in newest:
                continue
            (kept if (layer, number) in used else versions).append((layer, number))
    if not dry_run:
        for layer, number in versions:
            functions.delete_layer_version(layer, number)
    return PrunedLayers(versions=tuple(versions), kept_in_use=tuple(kept))
