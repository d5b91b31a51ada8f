"""Creating a workflow's read views (``runtime.documents.views``), as the functions that create
the indexes do: idempotent, and a clear error when the name is taken by something else.

One ``create`` per view. MongoDB (7.0 and later) answers a ``create`` of a view that exists with
the same definition with success, and one with another definition with ``NamespaceExists``; an
older server answers ``NamespaceExists`` to both, so the definition is then read back to tell
them apart.

``WorkflowReads`` reads a collection as a view of it would, for the embedded server, which
answers a read through a view by scanning the whole collection under it, and plans a point read
as one only when its filter is ``_id`` alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pymongo.collection import Collection
from pymongo.command_cursor import CommandCursor
from pymongo.cursor import Cursor
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

from runtime.documents import ID
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
    database role does (locally).

    A ``find_one`` by ``_id`` and fields of string values (the workflow's among them) asks the
    server for ``_id`` alone and drops a document those fields do not match: the same answer,
    and the embedded server takes its primary-key path only for a filter of ``_id`` alone (it
    tries its other indexes first for any other, three times the time)."""

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

    def find_one(self, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        projection = args[0] if args else kwargs.get("projection")
        checked = _checked_fields(filter, of_workflow(self.workflow))
        if (
            checked is None
            or len(args) > 1
            or set(kwargs) - {"projection"}
            or not self._can_add(projection, checked)
        ):
            return super().find_one(filter, *args, **kwargs)
        asked = None if projection is None else {**projection, **dict.fromkeys(checked, 1)}
        # The collection's own find: this one's would add the workflow to the filter again.
        document = next(iter(super().find({ID: filter[ID]}, asked).limit(-1)), None)
        if document is None or any(document.get(name) != value for name, value in checked.items()):
            return None
        for name in set(asked or ()) - set(projection or ()):
            del document[name]
        return document

    def _can_add(self, projection: Any, fields: Mapping[str, str]) -> bool:
        """Whether ``projection`` can be asked for with ``fields`` too, and them dropped again:
        none (the whole document), or an inclusion of other fields, read as dictionaries."""
        if projection is None:
            return True
        if not isinstance(projection, Mapping) or any(
            value not in (1, True) for value in projection.values()
        ):
            return False
        if any(key.startswith(f"{name}.") for key in projection for name in fields):
            return False
        return set(fields) <= set(projection) or issubclass(self.codec_options.document_class, dict)

    def count_documents(self, filter: Mapping[str, Any], *args: Any, **kwargs: Any) -> int:
        return super().count_documents(self._scoped(filter), *args, **kwargs)

    def aggregate(self, pipeline: Any, *args: Any, **kwargs: Any) -> CommandCursor[Any]:
        return super().aggregate([{"$match": of_workflow(self.workflow)}, *pipeline], *args, **kwargs)

    def with_options(self, *args: Any, **kwargs: Any) -> Collection[Any]:
        return WorkflowReads(super().with_options(*args, **kwargs), self.workflow)


def _checked_fields(query: Any, wanted: Mapping[str, str]) -> dict[str, str] | None:
    """The fields besides ``_id`` that a point read by ``query`` under ``wanted`` checks itself:
    top-level fields of string values, compared as MongoDB compares a string with a field that
    holds one (no field of these documents holds a list). None when ``query`` is no such point
    read, or asks another value of a field of ``wanted``."""
    if not isinstance(query, Mapping) or ID not in query or isinstance(query[ID], Mapping | list):
        return None
    checked = {name: value for name, value in query.items() if name != ID}
    if any(checked.get(name, value) != value for name, value in wanted.items()):
        return None
    checked.update(wanted)
    if all(
        isinstance(value, str) and "." not in name and not name.startswith("$")
        for name, value in checked.items()
    ):
        return checked
    return None


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
