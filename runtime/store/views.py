"""Creating a workflow's read views (``runtime.documents.views``), as the functions that create
the indexes do: idempotent, and a clear error when the name is taken by something else.

One ``create`` per view. MongoDB (7.0 and later) answers a ``create`` of a view that exists with
the same definition with success, and one with another definition with ``NamespaceExists``; an
older server answers ``NamespaceExists`` to both, so the definition is then read back to tell
them apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

from runtime.documents.views import ViewDefinition
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
