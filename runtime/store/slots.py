"""The MongoDB adapter of the ``SlotStore`` port: the slot documents of run concurrency in
``slots`` and the queue of runs waiting for one in ``state-machines``
(``runtime.documents.slots``). Each method is one MongoDB command; driver failures become
``StoreError``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

from runtime.documents import ID
from runtime.documents.run import CREATED_AT, RUN_STATE
from runtime.documents.slots import (
    ARRIVALS,
    QUEUE_INDEX,
    QUEUE_INDEX_NAME,
    QUEUE_ORDER,
    arrival_update,
    holder_states_query,
    holders_of,
    key_of_document,
    queue_projection,
    queued_query,
    release_update,
    slot_id,
    slots_query,
    take_filter,
    take_update,
)
from runtime.errors import StoreError
from runtime.statuses import RunState

Document = dict[str, Any]
T = TypeVar("T")


def _guard(action: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except DuplicateKeyError:
        raise
    except PyMongoError as exc:
        raise StoreError(f"could not {action}: {exc}") from exc


class MongoSlots:
    """Slots and the queue on one database (the runs' collection and ``slots``)."""

    def __init__(self, runs: Collection[Document], slots: Collection[Document]) -> None:
        self.runs = runs
        self.slots = slots

    def ensure_indexes(self) -> None:
        keys, options = QUEUE_INDEX
        _guard(
            "create the queue's index", lambda: self.runs.create_index(keys, name=QUEUE_INDEX_NAME, **options)
        )

    def arrive(self, workflow: str, key: str) -> int:
        """The next arrival number of the key (from 1)."""
        document = _guard(
            "count an arrival",
            lambda: self.slots.find_one_and_update(
                {ID: slot_id(workflow, key)},
                arrival_update(workflow, key),
                upsert=True,
                return_document=ReturnDocument.AFTER,
            ),
        )
        assert document is not None  # upserted
        return int(document[ARRIVALS])

    def take(self, workflow: str, key: str, run_id: str, limit: int) -> bool:
        """Whether ``run_id`` holds a slot after this write: it took one, or held one already;
        False when ``limit`` other runs hold them all."""
        try:
            _guard(
                "take a slot",
                lambda: self.slots.update_one(
                    take_filter(workflow, key, run_id, limit),
                    take_update(workflow, key, run_id, limit),
                    upsert=True,
                ),
            )
        except DuplicateKeyError:
            return False
        return True

    def release(self, workflow: str, key: str, run_id: str) -> None:
        _guard(
            "release a slot",
            lambda: self.slots.update_one({ID: slot_id(workflow, key)}, release_update(run_id)),
        )

    def holders(self, workflow: str, key: str) -> list[str]:
        return holders_of(_guard("read a slot", lambda: self.slots.find_one({ID: slot_id(workflow, key)})))

    def held_keys(self, workflow: str | None) -> list[tuple[str, str, list[str]]]:
        """(workflow, key, holders) of every slot document some run holds."""
        return _guard(
            "read the slots",
            lambda: [
                (*key_of_document(doc), holders_of(doc)) for doc in self.slots.find(slots_query(workflow))
            ],
        )

    def holder_states(self, run_ids: list[str]) -> dict[str, tuple[RunState, Any]]:
        """The state and creation time of each run that exists."""
        query, projection = holder_states_query(run_ids)
        return _guard(
            "read the runs holding slots",
            lambda: {
                doc[ID]: (RunState(doc[RUN_STATE]), doc.get(CREATED_AT))
                for doc in self.runs.find(query, projection)
            },
        )

    def next_queued(self, workflow: str, key: str, limit: int) -> list[str]:
        """The ids of the first ``limit`` queued runs of the key, in the order they start."""
        return _guard(
            "read the queue",
            lambda: [
                doc[ID]
                for doc in self.runs.find(queued_query(workflow, key), {ID: 1}).sort(QUEUE_ORDER).limit(limit)
            ],
        )

    def queued_keys(self, workflow: str | None) -> list[tuple[str, str]]:
        """(workflow, key) of every key with a queued run."""
        return _guard(
            "read the queued runs",
            lambda: sorted(
                {key_of_document(doc) for doc in self.runs.find(queued_query(workflow), queue_projection())}
            ),
        )

    def count_queued(self, workflow: str, key: str) -> int:
        return _guard("count the queue", lambda: self.runs.count_documents(queued_query(workflow, key)))
