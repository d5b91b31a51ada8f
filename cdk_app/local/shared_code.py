"""The spec's ``shared`` folder on the import path of job code run in this process, as Lambda
has its contents at the top level of each job's bundle (``constructs.lambda_code``)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from runtime.definition.model import Workflow

_placing = threading.Lock()


def put_shared_on_path(workflow: Workflow, fresh: bool = False) -> None:
    """Put the workflow's shared folder first on ``sys.path`` (``put_folder_on_path``)."""
    if workflow.shared is not None:
        put_folder_on_path(Path(workflow.shared), fresh)


def put_folder_on_path(folder: Path, fresh: bool = False) -> None:
    """Put a shared folder (the spec's, or a snapshot's copy of it) first on ``sys.path``.
    ``fresh`` (the dev server, at each invocation) also drops the modules imported from it, and
    those of the same names imported from outside this Python's installation (another
    workflow's shared folder, or another snapshot's), so the next import reads these files."""
    with _placing:
        if fresh:
            names = {entry.stem if entry.is_file() else entry.name for entry in folder.iterdir()}
            for name, module in list(sys.modules.items()):
                file = getattr(module, "__file__", None)
                if file is None:
                    continue
                if Path(file).is_relative_to(folder) or (
                    name.split(".")[0] in names and not _installed(Path(file))
                ):
                    del sys.modules[name]
        if str(folder) in sys.path:
            sys.path.remove(str(folder))
        sys.path.insert(0, str(folder))


def _installed(file: Path) -> bool:
    """A module of this Python's installation: the standard library or an installed package."""
    return any(file.is_relative_to(prefix) for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix})
