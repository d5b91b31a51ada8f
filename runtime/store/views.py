"""Creating a workflow's read views (``runtime.documents.views``), as the functions that create
the indexes do: idempotent, and a clear error when the name is taken by something else.

One ``create`` per view. MongoDB (7.0 and later) answers a ``create`` of a view that exists with
the same definition with success, and one with another definition with ``NamespaceExists``; an
older server answers ``NamespaceExists`` to both, so the definition is then read back to tell
them apart.

``WorkflowReads`` reads a collection as a view of it would, for the embedded server, which
answers a read through a view by scanning the whole collection under it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pymongo.collection import Collection
from pymongo.command_cursor import CommandCursor
from pymongo.cursor import Cursor
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

from runtime.documents.views import ViewDefinition, of_workflow, view_name
from runtime.errors import StoreError

NAMESPACE_EXISTS = 48


def ensure_views(database: Database[Any], definitions: Iterable[ViewDefinition]) -> None:
    """Create each view unless it exists with the same definition; ``StoreError`` when a
    collection or another view holds its name."""
    for view in definitions:
        try:
            database.create_collection(
                view.name, viewOn=view.view_on, pipeline=view.pipeline, check_exists=False
            )
        except OperationFailure as exc:
            if exc.code != NAMESPACE_EXISTS:
                raise StoreError(f"could not create the view {view.name}: {exc}") from exc
            _check_existing(database, view)
        except PyMongoError as exc:
            raise StoreError(f"could not create the view {view.name}: {exc}") from exc


def _check_existing(database: Database[Any], view: ViewDefinition) -> None:
    try:
        found = list(database.list_collections(filter={"name": view.name}))
    except PyMongoError as exc:
        raise StoreError(
            f"{database.name}.{view.name} exists, and its definition could not be read to compare it "
            f"with the view this version needs: {exc}"
        ) from exc
    if not found:  # dropped in between: create it again
        ensure_views(database, [view])
        return
    options = found[0].get("options", {})
    if found[0].get("type") != "view" or options.get("viewOn") != view.view_on:
        raise StoreError(
            f"{database.name}.{view.name} exists and is not a view on {view.view_on}: it holds the "
            "name of a job's read view; rename or drop it"
        )
    if list(options.get("pipeline", [])) != view.pipeline:
        raise StoreError(
            f"{database.name}.{view.name} is a view with another pipeline ({options.get('pipeline')!r}) "
            f"than this version's ({view.pipeline!r}); drop it, and the next start or reconciler pass "
            "creates it again"
        )


class WorkflowReads(Collection[Any]):
    """A collection read as ``workflow``'s view of it reads it: every query also asks for the
    workflow's field. For a server that answers a read through a view by scanning the whole
    collection under it, as the embedded one does (benchmarks/README.md, "Fan-out"): a point
    read stays a point read. Nothing enforces it, so it stands for a view only where no
    database role does (locally)."""

    def __init__(self, collection: Collection[Any], workflow: str) -> None:
        super().__init__(
            collection.database,
            collection.name,
            codec_options=collection.codec_options,
            read_preference=collection.read_preference,
            write_concern=collection.write_concern,
            read_concern=collection.read_concern,
        )
        self.workflow = workflow

    def _scoped(self, query: Mapping[str, Any] | None) -> dict[str, Any]:
        wanted = of_workflow(self.workflow)
        if not query:
            return wanted
        if set(query) & set(wanted):
            return {"$and": [dict(query), wanted]}
        return {**query, **wanted}

    def find(self, *args: Any, **kwargs: Any) -> Cursor[Any]:
        if args:
            args = (self._scoped(args[0]), *args[1:])
        else:
            kwargs["filter"] = self._scoped(kwargs.get("filter"))
        return super().find(*args, **kwargs)

    def count_documents(self, filter: Mapping[str, Any], *args: Any, **kwargs: Any) -> int:
        return super().count_documents(self._scoped(filter), *args, **kwargs)

    def aggregate(self, pipeline: Any, *args: Any, **kwargs: Any) -> CommandCursor[Any]:
        return super().aggregate([{"$match": of_workflow(self.workflow)}, *pipeline], *args, **kwargs)

    def with_options(self, *args: Any, **kwargs: Any) -> Collection[Any]:
        return WorkflowReads(super().with_options(*args, **kwargs), self.workflow)


def workflow_reads(
    database: Database[Any], collection: str, workflow: str | None, views: bool = True
) -> Collection[Any]:
    """Where a store reads ``collection``: the collection itself, or with ``workflow``, that
    workflow's view of it (``views``), or the collection under the view's filter
    (``WorkflowReads``)."""
    if workflow is None:
        return database[collection]
    if views:
        return database[view_name(workflow, collection)]
    return WorkflowReads(database[collection], workflow)
