"""Where the project is: the folder holding cdk.json, and the spec folder its context names."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cdk_app.errors import EXIT_USAGE, CommandError

CDK_JSON = "cdk.json"
"""Marks the project root: looked for in the current folder and the folders above it."""

DEFAULT_WORKFLOWS_DIR = "workflows"
"""Used when cdk.json has no ``workflowsDir`` context."""


def project_root(start: Path) -> Path | None:
    """The nearest folder holding cdk.json, from ``start`` upwards: the CLI works from any folder
    of the project, as git does."""
    for folder in (start, *start.parents):
        if (folder / CDK_JSON).is_file():
            return folder
    return None


def workflows_dir() -> str:
    """The spec folder the app synthesizes: cdk.json's ``workflowsDir`` context, resolved from the
    project root (where ``cdk synth`` runs the app), so ``validate`` checks exactly what synth
    would build. Given relative to the current folder, as the user's own paths are."""
    root = project_root(Path.cwd())
    if root is None:
        return DEFAULT_WORKFLOWS_DIR
    try:
        settings = json.loads((root / CDK_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read {os.path.relpath(root / CDK_JSON)}: {exc}", EXIT_USAGE) from exc
    context = settings.get("context") if isinstance(settings, dict) else None
    folder = context.get("workflowsDir", DEFAULT_WORKFLOWS_DIR) if isinstance(context, dict) else None
    return os.path.relpath(root / str(folder or DEFAULT_WORKFLOWS_DIR))
