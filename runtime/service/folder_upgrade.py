"""``redrive --upgrade`` off the cloud: a run moved to its workflow's spec in a folder. Apart from
``runtime.service.operations`` because it reads specs (the loader), which the functions' layer
does not bundle: the CLI, the console and ``runtime.client`` use it."""

from __future__ import annotations

from os import PathLike

from runtime.definition.loader import workflow_in_folder
from runtime.errors import OperationRefused
from runtime.ports import RunStore
from runtime.service.operations import OperationReceipt, existing_run, request_upgrade

DEPLOYED_FUNCTION = "arn:"
"""How a run's version map names a deployed function version (a local one names a snapshot)."""


def request_upgrade_to_folder(
    store: RunStore, run_id: str, folder: str | PathLike[str], *, workflow: str | None = None
) -> OperationReceipt:
    """``redrive --upgrade`` off the cloud: move the ended run to its workflow's spec in
    ``folder`` and take its version map off, so its next dispatch pins it to the code there (the
    dev server), or invokes the functions by name. A run pinned to a deploy's versions is
    refused: only its starter knows that deploy's versions, and the message says how to ask it."""
    run = existing_run(store, run_id, workflow)
    if run.deployment is not None and any(
        function.startswith(DEPLOYED_FUNCTION) for function in run.deployment.functions.values()
    ):
        payload = f'{{"action": "redrive", "upgrade": true, "run_id": "{run_id}"}}'
        raise OperationRefused(
            f"run {run_id} runs the versions of a deploy ({run.deployment.deploy_id}); its starter knows the "
            f"current ones: aws lambda invoke --function-name {run.workflow}-starter "
            f"--cli-binary-format raw-in-base64-out --payload '{payload}' /dev/stdout"
        )
    return request_upgrade(store, run_id, workflow_in_folder(folder, run.workflow), None, workflow=workflow)
