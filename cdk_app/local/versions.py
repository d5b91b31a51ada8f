"""The dev server's job functions, versioned as a deploy's are: each run invokes the snapshot of
the job code it is pinned to (``cdk_app.local.snapshots``), so editing a job while a run is in
flight changes the next runs only.

A run is pinned when the dev server first dispatches one of its jobs (within moments of its
start): to the code the spec folder holds then, by a write conditional on the run having no
version map, so of two dispatches racing one pins and the other reads what it pinned. A redrive
keeps the map; ``redrive --upgrade`` takes it off, so the run is pinned again, to the code of
its next dispatch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from cdk_app.local.cloud import JobFunction
from cdk_app.local.processes import JobProcesses
from cdk_app.local.snapshots import CodeSnapshots
from runtime.definition.loader import workflow_in_folder
from runtime.definition.model import Workflow
from runtime.documents.events import JobEvent
from runtime.documents.run import deployment_set, not_pinned
from runtime.errors import RunError
from runtime.service.operations import OperationReceipt, request_upgrade
from runtime.store.mongo import MongoStore

DEPLOYED_FUNCTION = "arn:"
"""How a deploy's version map names a function (a qualified ARN); locally it is a name and a
snapshot's key."""


class PinnedFunctions:
    def __init__(
        self,
        store: MongoStore,
        workflows: Callable[[], Mapping[str, Workflow]],
        snapshots: CodeSnapshots,
        processes: JobProcesses,
    ) -> None:
        self.store = store
        self.workflows = workflows
        """The workflows deployed now (the spec folder as last loaded)."""
        self.snapshots = snapshots
        self.processes = processes
        """Where the snapshots' code runs: workers of one snapshot's job never run another's."""

    def job_function(self, event: JobEvent) -> JobFunction | None:
        """The function ``event`` invokes: the one it names, else the one its run is pinned to
        (pinning the run first if it is not). None when there is none: the workflow is not in
        the folder, or the snapshot is gone."""
        function = event.function or self._pinned_function(event)
        if function is None:
            return None
        job = self.snapshots.job(function, event.job)
        if job is None:
            return None
        shared = self.snapshots.shared_folder(function)
        return JobFunction(job=job, handler=self.processes.handler(event.workflow, job, shared))

    def _pinned_function(self, event: JobEvent) -> str | None:
        run = self.store.read_run(event.run_id)
        if run is None:
            return None
        if run.deployment is None:
            definition = self.workflows().get(event.workflow)
            if definition is None:
                return None
            deployment = self.snapshots.snapshot(definition)
            if self.store.apply_transition(event.run_id, not_pinned(), deployment_set(deployment)):
                return deployment.function_of(event.job)
            run = self.store.read_run(event.run_id)  # another dispatch pinned it first
            if run is None or run.deployment is None:
                return None
        return run.deployment.function_of(event.job)


def upgrade_to_folder(store: MongoStore, run_id: str, folder: Path) -> OperationReceipt:
    """``redrive --upgrade`` from the CLI: move the ended run to its workflow's spec in ``folder``
    and take its version map off, so its next dispatch pins it to the code there (the dev
    server), or invokes the functions by name. A run pinned to a deploy's versions is refused:
    only its starter knows that deploy's versions, and the message says how to ask it."""
    run = store.read_run(run_id)
    if run is None:
        raise RunError(f"no run {run_id!r} in this database (check the run id and the MongoDB URI)")
    if run.deployment is not None and any(
        function.startswith(DEPLOYED_FUNCTION) for function in run.deployment.functions.values()
    ):
        payload = f'{{"action": "redrive", "upgrade": true, "run_id": "{run_id}"}}'
        raise RunError(
            f"run {run_id} runs the versions of a deploy ({run.deployment.deploy_id}); its starter knows the "
            f"current ones: aws lambda invoke --function-name {run.workflow}-starter "
            f"--cli-binary-format raw-in-base64-out --payload '{payload}' /dev/stdout"
        )
    return request_upgrade(store, run_id, workflow_in_folder(folder, run.workflow), None)
