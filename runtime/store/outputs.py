"""Outputs kept by reference: what is too large to travel in an event.

A job's output travels in its ``success`` status (an EventBridge event, 256 KB at most) and in
the events of the jobs after it. One larger than ``limits.OUTPUT_INLINE_MAX_BYTES`` is stored by
the job wrapper instead, in the ``outputs`` collection (or, past what one MongoDB document holds,
in GridFS, bucket ``outputs``), and the status carries its reference. A ``for_each`` job's output,
the array of its items' outputs, is never assembled in the orchestrator: its reference names the
job's items. Dependents get ``references`` beside ``results`` in their event, and the job wrapper
puts the values into ``results`` before the user's handler sees them (``resolve``), so the
handler cannot tell the difference.

The orchestrator loads outputs too, for the ``when`` and ``for_each`` expressions that read them,
in 256 MB; so it loads with a budget (``load_within``): the size is read first (the server
measures a document's JSON text, GridFS keeps a file's length) and a fan-out's items are summed
one by one, so nothing past the budget is ever loaded. Evaluating the expression on a projection
of the output would not bound memory (``length(results.big.rows)`` reads it all), nor would a
streaming parse (a ``for_each`` needs its array whole): a bound on what is loaded does.

References: ``output:<id>`` (a document of ``outputs``), ``gridfs:<id>`` (a GridFS file) and
``items:<run id>/<job>`` (``runtime.documents.items.items_ref``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

import gridfs
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from runtime import limits
from runtime.clock import utcnow
from runtime.documents import ID
from runtime.documents.items import INDEX, OUTPUT, STATE, job_items_filter
from runtime.documents.items import OUTPUT_REF as ITEM_OUTPUT_REF
from runtime.documents.outputs import (
    GRIDFS_CHUNKS_INDEX,
    GRIDFS_FILES_INDEX,
    GRIDFS_REF,
    ITEMS_REF,
    JSON,
    OUTPUT_CHUNKS,
    OUTPUT_FILES,
    OUTPUT_REF,
    OUTPUTS,
    RUN_REF,
    SIZE,
    gridfs_chunks,
    gridfs_file,
    json_size_pipeline,
    output_document,
    output_filter,
    parse_reference,
    reference,
)
from runtime.documents.run import job_output_of, job_output_projection, run_filter
from runtime.documents.views import gridfs_id, labelled, unlabelled, view_name
from runtime.errors import OutputTooLarge, StoreError
from runtime.statuses import ItemState
from runtime.store.views import workflow_reads

Document = dict[str, Any]

KEPT_TEXTS_MAX_BYTES = 8 * 2**20
"""The JSON of the outputs (kept by reference in a document of their own) a store keeps after
loading them: an output is inserted once and never replaced, and every item of a fan-out gets
the same results, so its attempts read them from the server once, not once per item."""

ITEMS_BATCH = 16
"""Items read per round trip when their outputs are summed against a budget: at most 2 MB of
outputs kept in the items themselves (128 KB each) wait in a batch."""


class OutputStore:
    """Stores and loads the outputs kept by reference, on one database. ``items``: the
    collection the items are read from. With ``workflow`` (the job wrapper's), every read goes
    through that workflow's views (``runtime.documents.views``), and GridFS's bucket is read as
    the bucket of those views; writes go to the collections, views being read-only."""

    def __init__(
        self,
        database: Database[Document],
        items: Collection[Document],
        workflow: str | None = None,
        runs: Collection[Document] | None = None,
        views: bool = True,
    ) -> None:
        self.outputs: Collection[Document] = database[OUTPUTS]
        self.items = items
        self.runs = runs
        """Where an output the run document holds is read (``run:`` references): the runs, or the
        workflow's view of them."""
        self._readable: Collection[Document] = workflow_reads(database, OUTPUTS, workflow, views)
        reads = OUTPUTS if workflow is None else view_name(workflow, OUTPUTS)
        self.files = gridfs.GridFSBucket(database, bucket_name=reads)
        self._database = database
        self._texts: dict[str, str] = {}
        self._texts_lock = threading.Lock()

    def ensure_indexes(self) -> None:
        """GridFS's own indexes on the bucket, as ``GridFSBucket`` would make them on its first
        upload: made here, by the functions that create indexes, the job wrapper (whose database
        role may list indexes but not create them) finds them and creates none."""
        for collection, keys, unique in (
            (self.files_collection, GRIDFS_FILES_INDEX, False),
            (self.chunks_collection, GRIDFS_CHUNKS_INDEX, True),
        ):
            try:
                collection.create_index(list(keys.items()), unique=unique)
            except PyMongoError as exc:
                raise StoreError(f"could not create GridFS's index on {collection.name}: {exc}") from exc

    @property
    def files_collection(self) -> Collection[Document]:
        return self.outputs.database[OUTPUT_FILES]

    @property
    def chunks_collection(self) -> Collection[Document]:
        return self.outputs.database[OUTPUT_CHUNKS]

    def store(self, output_id: str, value: Any, workflow: str) -> str:
        """Keep ``value``, an output of ``workflow``, and answer its reference. Stored as JSON
        text, so it comes back as the JSON the handler returned, and in GridFS once it would not
        fit one document."""
        text = json.dumps(value, allow_nan=False)
        if len(text.encode()) <= limits.RUN_DOCUMENT_MAX_BYTES:
            try:
                self.outputs.insert_one(output_document(output_id, text, workflow))
            except DuplicateKeyError:
                self._stored_already(output_id, text)
            except Exception as exc:  # pymongo's errors; the attempt fails with the reason
                raise StoreError(f"could not store the output {output_id}: {exc}") from exc
            return reference(OUTPUT_REF, output_id)
        try:
            self._upload(gridfs_id(workflow, output_id), output_id, text.encode())
        except Exception as exc:  # as above
            raise StoreError(f"could not store the output {output_id} in GridFS: {exc}") from exc
        return reference(GRIDFS_REF, output_id)

    def _stored_already(self, output_id: str, text: str) -> None:
        """An output is stored once, by its attempt (inserted, never replaced: the job database
        role may not update outputs): the same value stored again is fine, another is an error."""
        try:
            stored = self._readable.find_one(output_filter(output_id))
        except PyMongoError as exc:
            raise StoreError(f"could not store the output {output_id}: {exc}") from exc
        if stored is None or stored.get(JSON) != text:
            raise StoreError(f"the output {output_id} is stored already, with another value")

    def adopt(self, ref: str, workflow: str) -> None:
        """Give the output at ``ref``, stored before the views existed, its workflow, so its
        workflow's jobs read it: the document's field set; a GridFS file (whose id cannot change)
        copied under an id of its workflow, which its jobs read by name as the newest upload."""
        kind, name = parse_reference(ref)
        try:
            if kind == OUTPUT_REF:
                self.outputs.update_one(unlabelled(output_filter(name)), labelled(workflow))
            elif (
                kind == GRIDFS_REF and self.files_collection.find_one({ID: gridfs_id(workflow, name)}) is None
            ):
                stored = gridfs.GridFSBucket(
                    self._database, bucket_name=OUTPUTS
                ).open_download_stream_by_name(name)
                self._upload(gridfs_id(workflow, name), name, stored.read())
        except gridfs.errors.NoFile:
            return  # expired: nothing to read
        except PyMongoError as exc:
            raise StoreError(f"could not give the output {ref} its workflow {workflow}: {exc}") from exc

    def _upload(self, file_id: str, filename: str, data: bytes) -> None:
        """A GridFS file as ``GridFSBucket`` writes one, with inserts alone: the bucket's upload
        first reads the collections (to decide whether to create its indexes, which
        ``ensure_indexes`` made), and the job database role may read only its views. The chunks
        come first, so a reader never finds the file without them."""
        self.chunks_collection.insert_many(gridfs_chunks(file_id, data))
        self.files_collection.insert_one(gridfs_file(file_id, filename, len(data), utcnow()))

    def load(self, ref: str) -> Any:
        kind, name = parse_reference(ref)
        try:
            if kind == OUTPUT_REF:
                return json.loads(self._text(ref, name))
            if kind == GRIDFS_REF:
                return json.loads(self.files.open_download_stream_by_name(name).read())
            if kind == ITEMS_REF:
                run_id, _, job = name.rpartition("/")
                return self._item_outputs(run_id, job)
            if kind == RUN_REF:
                run_id, _, job = name.rpartition("/")
                if self.runs is None:
                    raise StoreError(
                        f"the output {ref} is in its run document, which this store does not read"
                    )
                run = self.runs.find_one(run_filter(run_id), job_output_projection(job))
                if run is None:
                    raise StoreError(f"the output {ref} is gone")
                return job_output_of(run, job)
        except gridfs.errors.NoFile as exc:
            raise StoreError(f"the output {ref} is gone") from exc
        raise StoreError(f"unknown output reference {ref!r}")

    def _text(self, ref: str, name: str) -> str:
        """The JSON of an output document, kept (``KEPT_TEXTS_MAX_BYTES``, the oldest dropped
        first); parsed anew for each reader, so no handler sees another's changes to it."""
        text = self._texts.get(name)
        if text is None:
            document = self._readable.find_one(output_filter(name))
            if document is None:
                raise StoreError(f"the output {ref} is gone")
            text = str(document[JSON])
            with self._texts_lock:
                kept = sum(map(len, self._texts.values()))
                while self._texts and kept + len(text) > KEPT_TEXTS_MAX_BYTES:
                    kept -= len(self._texts.pop(next(iter(self._texts))))
                if len(text) <= KEPT_TEXTS_MAX_BYTES:
                    self._texts[name] = text
        return text

    def load_within(self, ref: str, budget: int) -> tuple[Any, int]:
        """The value at ``ref`` and its size as JSON, when that size is within ``budget`` bytes;
        ``OutputTooLarge`` before anything past the budget is loaded otherwise."""
        kind, name = parse_reference(ref)
        try:
            if kind == OUTPUT_REF:
                measured = list(self._readable.aggregate(json_size_pipeline(name)))
                if not measured:
                    raise StoreError(f"the output {ref} is gone")
                size = int(measured[0][SIZE])
                if size > budget:
                    raise OutputTooLarge(ref, size, budget)
                return self.load(ref), size
            if kind == GRIDFS_REF:
                stream = self.files.open_download_stream_by_name(name)  # reads the length only
                if stream.length > budget:
                    raise OutputTooLarge(ref, stream.length, budget)
                return json.loads(stream.read()), stream.length
            if kind == ITEMS_REF:
                run_id, _, job = name.rpartition("/")
                return self._item_outputs_within(ref, run_id, job, budget)
        except gridfs.errors.NoFile as exc:
            raise StoreError(f"the output {ref} is gone") from exc
        except PyMongoError as exc:
            raise StoreError(f"could not measure the output {ref}: {exc}") from exc
        raise StoreError(f"unknown output reference {ref!r}")

    def _item_outputs_within(self, ref: str, run_id: str, job: str, budget: int) -> tuple[list[Any], int]:
        """A fan-out's output (``_item_outputs``) and its size as JSON, summed item by item: it
        stops at the first item that takes the sum past ``budget``."""
        outputs: list[Any] = []
        used = 2  # the brackets
        cursor = self.items.find(
            job_items_filter(run_id, job), {OUTPUT: 1, ITEM_OUTPUT_REF: 1, STATE: 1, INDEX: 1}
        )
        with cursor.sort(INDEX, 1).batch_size(ITEMS_BATCH) as documents:
            for document in documents:
                separator = 2 if outputs else 0
                if document.get(STATE) != ItemState.SUCCEEDED:
                    value, size = None, limits.json_bytes(None)
                elif document.get(ITEM_OUTPUT_REF):
                    left = budget - used - separator
                    try:
                        value, size = self.load_within(document[ITEM_OUTPUT_REF], left)
                    except OutputTooLarge as exc:
                        raise OutputTooLarge(ref, used + separator + exc.size, budget, at_least=True) from exc
                else:
                    value = document.get(OUTPUT)
                    size = limits.json_bytes(value)
                used += separator + size
                if used > budget:
                    raise OutputTooLarge(ref, used, budget, at_least=True)
                outputs.append(value)
        if not outputs:
            raise StoreError(f"the output {ref} is gone")
        return outputs, used

    def _item_outputs(self, run_id: str, job: str) -> list[Any]:
        """The outputs of a fan-out's items in index order; null for an item that failed. A
        fan-out's reference names one item at least (no items: the job's output is ``[]``
        itself), so none found is an output gone (or not its reader's workflow's)."""
        outputs: list[Any] = []
        cursor = self.items.find(
            job_items_filter(run_id, job), {OUTPUT: 1, ITEM_OUTPUT_REF: 1, STATE: 1, INDEX: 1}
        )
        for document in cursor.sort(INDEX, 1):
            if document.get(STATE) != ItemState.SUCCEEDED:
                outputs.append(None)
            elif document.get(ITEM_OUTPUT_REF):
                outputs.append(self.load(document[ITEM_OUTPUT_REF]))
            else:
                outputs.append(document.get(OUTPUT))
        if not outputs:
            raise StoreError(f"the output {reference(ITEMS_REF, f'{run_id}/{job}')} is gone")
        return outputs

    def resolve(self, results: Mapping[str, Any], references: Mapping[str, str]) -> dict[str, Any]:
        """``results`` with the values of the outputs kept by reference."""
        return {**results, **{name: self.load(ref) for name, ref in references.items()}}
