"""Job code as a deploy would pin it, on this machine: a content-addressed copy of a workflow's
job code and settings, under the dev server's data folder, that runs keep invoking however the
spec folder changes afterwards (docs/operating.md, "Versions and deploys").

A snapshot is ``<root>/<key>/``: ``manifest.json`` (the compiled definition, and each job's
entry point and ``env``) and one folder per job with code, holding the job's file or its folder's files.
``key`` is a hash of all of that, so the same code and settings make the same snapshot, written
once; a run's version map names each job's function as ``<function name>:<key>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from runtime.definition.model import Job, Workflow, job_function_name
from runtime.documents.deployment import Deployment, deployment_of

MANIFEST = "manifest.json"
SHARED = "@shared"
"""A snapshot's copy of the spec's ``shared`` folder (no job name holds an ``@``)."""
KEY_CHARS = 16
SKIPPED_PARTS = frozenset({"__pycache__"})
"""What a job folder holds that is not its code (Python's compiled modules)."""


def _code_files(code: Path) -> tuple[str | None, dict[str, bytes]]:
    """A job's entry file name (None for a folder: ``handler.py`` inside it) and its files, by
    path relative to its code (a file, or a folder such as the spec's ``shared``)."""
    if not code.is_dir():
        return code.name, {code.name: code.read_bytes()}
    files = {
        path.relative_to(code).as_posix(): path.read_bytes()
        for path in sorted(code.rglob("*"))
        if path.is_file() and not SKIPPED_PARTS & set(path.relative_to(code).parts)
    }
    return None, files


class CodeSnapshots:
    """The snapshots under ``root``, written by whoever pins a run and read by the invocations."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        """Absolute, as the loader makes every job's ``code``: Python records imported modules'
        files by absolute path, and fresh loading finds a folder's modules by theirs."""

    def snapshot(self, workflow: Workflow) -> Deployment:
        """Copy ``workflow``'s job code as it is now (once per content) and return the version
        map that pins a run to it: every job with a function, stubs included (a job that gains
        code later still runs its stub in the runs pinned before)."""
        jobs: dict[str, Any] = {}
        contents: dict[str, dict[str, bytes]] = {}
        for job in workflow.jobs():
            if job.runs_code and job.code is not None:
                entry, files = _code_files(Path(job.code))
                contents[job.name] = files
                # The definition leaves the env out (build-time only): a function's is in its snapshot.
                jobs[job.name] = {"entry": entry, "env": dict(job.env)}
        if workflow.shared is not None:
            contents[SHARED] = _code_files(Path(workflow.shared))[1]
        manifest = {"definition": workflow.to_document(), "jobs": jobs}
        digest = {
            "manifest": manifest,
            "files": {
                job: {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
                for job, files in contents.items()
            },
        }
        key = hashlib.sha256(json.dumps(digest, sort_keys=True).encode()).hexdigest()[:KEY_CHARS]
        self._write(key, manifest, contents)
        functions = {
            job.name: f"{job_function_name(workflow.name, job.name)}:{key}"
            for job in workflow.jobs()
            if job.runs_code
        }
        return deployment_of(workflow.to_document(), functions)

    def _write(self, key: str, manifest: dict[str, Any], contents: dict[str, dict[str, bytes]]) -> None:
        """Written in a folder of its own, then renamed into place: a reader never sees half a
        snapshot, and two writers of the same content leave one."""
        target = self.root / key
        if target.is_dir():
            return
        staging = self.root / f".{key}-{uuid.uuid4().hex[:8]}"
        for job, files in contents.items():
            for name, data in files.items():
                path = staging / job / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        staging.mkdir(parents=True, exist_ok=True)
        (staging / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(staging, ignore_errors=True)  # another writer put the same content there

    def shared_folder(self, function: str) -> Path | None:
        """The snapshot's copy of the spec's ``shared`` folder, if the workflow has one."""
        folder = self.root / function.rpartition(":")[2] / SHARED
        return folder if folder.is_dir() else None

    def job(self, function: str, name: str) -> Job | None:
        """Job ``name`` as the snapshot ``function`` names it (its settings, and its ``code``
        pointing into the snapshot); None when there is no such snapshot or job."""
        key = function.rpartition(":")[2]
        folder = self.root / key
        with contextlib.suppress(OSError, ValueError, KeyError):
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            job = Workflow.from_document(manifest["definition"]).job(name)
            if name not in manifest["jobs"]:
                return replace(job, code=None)
            entry = manifest["jobs"][name]["entry"]
            code = folder / name if entry is None else folder / name / entry
            return replace(job, code=code.as_posix(), env=manifest["jobs"][name].get("env", {}))
        return None
