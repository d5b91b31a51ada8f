"""The read views of one workflow: what a job function may read (docs/deploy.md, "Database
access"). For each collection the job wrapper reads, a MongoDB view named
``views.<workflow>.<collection>`` over it, holding only that workflow's documents: the documents
with the workflow's name in their ``workflow`` field, and the GridFS files (and their chunks)
whose id begins with ``<workflow>/``. The job database role may read these views and not the
collections under them, so a job's code reads its own workflow's runs, statuses, leases, items
and outputs and no other's. Views are read-only: the job wrapper writes to the collections.

A workflow id is ``[a-z][a-z0-9_]*`` (the spec's schema): it holds no ``.``, so the view names of
two workflows never meet, and no collection of the app begins with ``views.``. Standard library
only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from runtime.documents import ID, WORKFLOW
from runtime.documents.items import OUTPUT_REF as ITEM_OUTPUT_REF
from runtime.documents.items import RUN_ID as ITEM_RUN_ID
from runtime.documents.outputs import GRIDFS_FILES_ID, OUTPUT_CHUNKS, OUTPUT_FILES, OUTPUTS
from runtime.documents.run import OUTPUT_REF, RUN_ID

VIEWS = "views"
"""The first part of every view's name."""

WORKFLOW_ID = re.compile(r"[a-z][a-z0-9_]*")
"""What the spec's schema allows as a workflow id."""


@dataclass(frozen=True)
class ViewDefinition:
    """One view: its name, the collection it reads and the pipeline that keeps the workflow's."""

    name: str
    view_on: str
    pipeline: list[dict[str, Any]]


def check_workflow_id(workflow: str) -> str:
    if not isinstance(workflow, str) or not WORKFLOW_ID.fullmatch(workflow):
        raise ValueError(
            f"{workflow!r} is not a workflow id (lower-case letters, digits and '_', starting with a letter)"
        )
    return workflow


def view_name(workflow: str, collection: str) -> str:
    """The name of ``workflow``'s view over ``collection``."""
    return f"{VIEWS}.{check_workflow_id(workflow)}.{collection}"


def gridfs_id(workflow: str, output_id: str) -> str:
    """The id of the GridFS file holding an output of ``workflow``: its view selects it by this
    prefix, since GridFS's documents have no field of ours."""
    return f"{check_workflow_id(workflow)}/{output_id}"


def of_workflow(workflow: str) -> dict[str, Any]:
    """The field every document a job reads by ``workflow`` carries."""
    return {WORKFLOW: workflow}


def unlabelled(query: dict[str, Any]) -> dict[str, Any]:
    """``query``'s documents that carry no workflow: written before the views existed."""
    return {**query, WORKFLOW: {"$exists": False}}


def labelled(workflow: str) -> dict[str, Any]:
    """The update giving a document its workflow."""
    return {"$set": of_workflow(workflow)}


def run_items(run_id: str) -> dict[str, Any]:
    """The items of a run's fan-outs."""
    return {ITEM_RUN_ID: run_id}


def output_references(run_id: str, *, items: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Selects a run's statuses (``items``: its items) that keep an output by reference, and
    projects the reference: the exact ids of its outputs, never a prefix of ids (a run id may
    hold ``/``)."""
    run, ref = (ITEM_RUN_ID, ITEM_OUTPUT_REF) if items else (RUN_ID, OUTPUT_REF)
    return {run: run_id, ref: {"$exists": True}}, {ref: 1}


def output_reference_of(document: dict[str, Any], *, items: bool) -> str:
    return str(document[ITEM_OUTPUT_REF if items else OUTPUT_REF])


def _prefixed(field: str, workflow: str) -> dict[str, Any]:
    return {field: {"$regex": f"^{re.escape(check_workflow_id(workflow))}/"}}


def view_definitions(workflow: str, collections: tuple[str, ...]) -> list[ViewDefinition]:
    """``workflow``'s views: one over each of ``collections`` (runs, statuses, leases, items,
    matched on their ``workflow`` field), and over the outputs kept by reference (``outputs`` by
    its field, the GridFS files by their id's prefix, their chunks by their file's)."""
    by_field = [*collections, OUTPUTS]
    definitions = [
        ViewDefinition(view_name(workflow, name), name, [{"$match": of_workflow(workflow)}])
        for name in by_field
    ]
    definitions.append(
        ViewDefinition(view_name(workflow, OUTPUT_FILES), OUTPUT_FILES, [{"$match": _prefixed(ID, workflow)}])
    )
    definitions.append(
        ViewDefinition(
            view_name(workflow, OUTPUT_CHUNKS),
            OUTPUT_CHUNKS,
            [{"$match": _prefixed(GRIDFS_FILES_ID, workflow)}],
        )
    )
    return definitions
