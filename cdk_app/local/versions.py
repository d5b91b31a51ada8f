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

from cdk_app.local.cloud import JobFunction
from cdk_app.local.processes import JobProcesses
from cdk_app.local.snapshots import CodeSnapshots
from runtime.definition.model import Workflow
from runtime.documents.events import JobEvent
from runtime.documents.run import deployment_set, not_pinned
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
