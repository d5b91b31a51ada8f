"""The ``ItemStore`` port, what the fan-out path reads and writes, and its MongoDB adapter.

Each method is one MongoDB command whose size does not grow with the number of items, lanes or
jobs: an item's report touches its own document, its own lane and the job's counters
(``runtime.documents.items``). Driver failures become ``StoreError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pymongo
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, PyMongoError

from runtime.clock import utcnow
from runtime.documents import ID
from runtime.documents.items import (
    ATTEMPT,
    FAILED_ITEM_PROJECTION,
    INDEX,
    ITEM_FIELDS,
    ITEM_KEY,
    ClaimedItem,
    FailedItem,
    Lane,
    LaneView,
    failed_item_from_document,
    failed_items_filter,
    item_attempt_reached,
    item_documents,
    item_ended,
    item_filter,
    item_value,
    lane_projection,
    lane_view,
    next_item_attempt,
    run_items_filter,
    unfinished_item,
)
from runtime.documents.outputs import run_outputs_filter
from runtime.documents.run import EXPIRE_AT, expiry_update, lane_moved, run_filter, without_expiry
from runtime.documents.views import (
    labelled,
    output_reference_of,
    output_references,
    run_items,
    unlabelled,
)
from runtime.errors import StoreError
from runtime.store.outputs import OutputStore
from runtime.store.views import workflow_reads

Document = dict[str, Any]
DUPLICATE_KEY = 11000


def _guard(action: str, call: Any) -> Any:
    try:
        return call()
    except PyMongoError as exc:
        raise StoreError(f"could not {action}: {exc}") from exc


class MongoItems:
    """``ItemStore`` on the run documents' database: ``items``, the runs' ``fanOut`` records.
    With ``workflow`` (the job wrapper's), the items and outputs are read through that
    workflow's views (``runtime.documents.views``)."""

    def __init__(
        self,
        runs: Collection[Document],
        items: Collection[Document],
        workflow: str | None = None,
        views: bool = True,
    ) -> None:
        self.runs = runs
        self.items = items
        database = runs.database
        self._read_runs = workflow_reads(database, runs.name, workflow, views)
        self._read_items = workflow_reads(database, items.name, workflow, views)
        self.outputs = OutputStore(database, self._read_items, workflow, self._read_runs, views)

    def ensure_indexes(self) -> None:
        _guard(
            "create the index one_item_per_index",
            lambda: self.items.create_index(
                [(name, pymongo.ASCENDING) for name in ITEM_KEY], name="one_item_per_index", unique=True
            ),
        )
        # TTL indexes holding only what has an expiry: a run's items and outputs go with it.
        for collection, name in (
            (self.items, "expire_ended_items"),
            (self.outputs.outputs, "expire_ended_outputs"),
        ):
            _guard(
                f"create the index {name}",
                lambda collection=collection, name=name: collection.create_index(
                    [(EXPIRE_AT, pymongo.ASCENDING)],
                    name=name,
                    expireAfterSeconds=0,
                    partialFilterExpression={EXPIRE_AT: {"$type": "date"}},
                ),
            )
        self.outputs.ensure_indexes()

    def expire(self, run_id: str, expire_at: datetime | None) -> None:
        """Give the run's items and the outputs it keeps by reference (their ids begin with the
        run id) the run's expiry, or take it off (``None``: a redrive keeps them again). Only
        what has no expiry yet is written when one is set. GridFS files are not covered: MongoDB
        cannot expire them, since a file is a document and its chunks."""
        update, unstamped = expiry_update(expire_at), without_expiry(expire_at)
        _guard(
            "set the expiry of the run's items",
            lambda: self.items.update_many(run_items_filter(run_id) | unstamped, update),
        )
        _guard(
            "set the expiry of the run's outputs",
            lambda: self.outputs.outputs.update_many(run_outputs_filter(run_id) | unstamped, update),
        )

    def adopt(self, run_id: str, workflow: str, refs: Sequence[str]) -> None:
        """Give a run's items, and its outputs kept by reference (``refs``, from its statuses,
        and its items'), written before the views existed, the run's ``workflow``
        (``MongoStore.adopt_running_runs``)."""
        query, projection = output_references(run_id, items=True)
        found = _guard(
            "read the outputs of a run's items",
            lambda: [
                output_reference_of(document, items=True) for document in self.items.find(query, projection)
            ],
        )
        _guard(
            "give a run's items their workflow",
            lambda: self.items.update_many(unlabelled(run_items(run_id)), labelled(workflow)),
        )
        for ref in (*refs, *found):
            self.outputs.adopt(ref, workflow)

    def insert_items(self, run_id: str, job: str, items: Sequence[Any], *, workflow: str) -> None:
        documents = item_documents(run_id, workflow, job, list(items))
        try:
            self.items.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            others = [
                error for error in exc.details.get("writeErrors", []) if error.get("code") != DUPLICATE_KEY
            ]
            if others:
                raise StoreError(f"could not store the items of {job!r}: {others[0].get('errmsg')}") from exc
        except PyMongoError as exc:
            raise StoreError(f"could not store the items of {job!r}: {exc}") from exc

    def read_lane(self, run_id: str, job: str, lane: int) -> LaneView | None:
        document = _guard(
            f"read a lane of {job!r}",
            lambda: self._read_runs.find_one(run_filter(run_id), lane_projection(job, lane)),
        )
        return None if document is None else lane_view(document, job, lane)

    def move_lane(
        self,
        run_id: str,
        job: str,
        lane: int,
        conditions: Mapping[str, Any],
        to: Lane,
        counts: Mapping[str, int],
    ) -> LaneView | None:
        update = lane_moved(job, lane, to, counts, utcnow())
        moved = _guard(
            f"move a lane of {job!r}",
            lambda: self.runs.update_one({**run_filter(run_id), **conditions}, update),
        )
        # Read back apart from the write (a point read): the counters then hold this move and
        # maybe others', which is all that deciding the job's end needs.
        return self.read_lane(run_id, job, lane) if moved.matched_count == 1 else None

    def end_item(
        self,
        run_id: str,
        job: str,
        index: int,
        state: str,
        output: Any,
        output_ref: str | None,
        error: str | None,
    ) -> None:
        _guard(
            f"record item {index} of {job!r}",
            lambda: self.items.update_one(
                unfinished_item(run_id, job, index), {"$set": item_ended(state, output, output_ref, error)}
            ),
        )

    def claim_next(
        self, run_id: str, job: str, after: int, concurrency: int, count: int
    ) -> ClaimedItem | None:
        # Point operations, one item after the other: a fresh fan-out claims the very next one;
        # after a redrive the lane skips its items that succeeded (each once: O(N) in all).
        for index in range(after + concurrency, count, concurrency):
            claimed = self._claim(unfinished_item(run_id, job, index))
            if claimed is not None:
                return claimed
        return None

    def claim_again(self, run_id: str, job: str, index: int, attempt: int) -> ClaimedItem | None:
        # The number is the one after the attempt that failed, whoever handles its report: two
        # handlings of one report claim the same number, and only the lane's move hands it out.
        document = _guard(
            f"claim item {index} of {job!r} again",
            lambda: self.items.find_one_and_update(
                item_filter(run_id, job, index),
                item_attempt_reached(attempt),
                projection=ITEM_FIELDS,
                return_document=pymongo.ReturnDocument.AFTER,
            ),
        )
        if document is None:
            return None
        return ClaimedItem(index=index, attempt=attempt, value=item_value(document))

    def _claim(self, query: Document) -> ClaimedItem | None:
        """The item with its next attempt: the number is taken before it is handed out, so no
        number is handed out twice (a crash between the two leaves one unused)."""
        taken = _guard("claim an item", lambda: self.items.update_one(query, next_item_attempt()))
        if taken.matched_count == 0:
            return None
        document = _guard("read a claimed item", lambda: self.items.find_one({ID: query[ID]}))
        if document is None:
            return None
        return ClaimedItem(index=document[INDEX], attempt=document[ATTEMPT], value=item_value(document))

    def read_item(self, run_id: str, job: str, index: int) -> Any:
        document = _guard(
            f"read item {index} of {job!r}",
            lambda: self._read_items.find_one(item_filter(run_id, job, index), ITEM_FIELDS),
        )
        if document is None:
            raise StoreError(f"item {index} of {job!r} in run {run_id!r} is not stored")
        return item_value(document)

    def failed_items(self, run_id: str, job: str, limit: int) -> list[FailedItem]:
        documents = _guard(
            f"read the failed items of {job!r}",
            lambda: list(
                self._read_items.find(failed_items_filter(run_id, job), FAILED_ITEM_PROJECTION)
                .sort(INDEX, pymongo.ASCENDING)
                .limit(limit)
            ),
        )
        return [failed_item_from_document(document) for document in documents]
