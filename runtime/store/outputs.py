"""Outputs kept by reference: what is too large to travel in an event.

A job's output travels in its ``success`` status (an EventBridge event, 256 KB at most) and in
the events of the jobs after it. One larger than ``limits.OUTPUT_INLINE_MAX_BYTES`` is stored by
the job wrapper instead, in the ``outputs`` collection (or, past what one MongoDB document holds,
in GridFS, bucket ``outputs``), and the status carries its reference. A ``for_each`` job's output,
the array of its items' outputs, is never assembled in the orchestrator: its reference names the
job's items. Dependents get ``references`` beside ``results`` in their event, and the job wrapper
puts the values into ``results`` before the user's handler sees them (``resolve``), so the
handler cannot tell the difference.

References: ``output:<id>`` (a document of ``outputs``), ``gridfs:<id>`` (a GridFS file) and
``items:<run id>/<job>`` (``runtime.documents.items.items_ref``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import gridfs
from pymongo.collection import Collection
from pymongo.database import Database

from runtime import limits
from runtime.documents.items import INDEX, OUTPUT, STATE, job_items_filter
from runtime.documents.items import OUTPUT_REF as ITEM_OUTPUT_REF
from runtime.documents.outputs import (
    GRIDFS_REF,
    ITEMS_REF,
    JSON,
    OUTPUT_REF,
    OUTPUTS,
    output_document,
    output_filter,
    parse_reference,
    reference,
)
from runtime.errors import StoreError
from runtime.statuses import ItemState

Document = dict[str, Any]


class OutputStore:
    """Stores and loads the outputs kept by reference, on one database."""

    def __init__(self, database: Database[Document], items: Collection[Document]) -> None:
        self.outputs: Collection[Document] = database[OUTPUTS]
        self.items = items
        self.files = gridfs.GridFSBucket(database, bucket_name=OUTPUTS)

    def store(self, output_id: str, value: Any) -> str:
        """Keep ``value`` and answer its reference. Stored as JSON text, so it comes back as
        the JSON the handler returned, and in GridFS once it would not fit one document."""
        text = json.dumps(value, allow_nan=False)
        if len(text.encode()) <= limits.RUN_DOCUMENT_MAX_BYTES:
            try:
                self.outputs.replace_one(
                    output_filter(output_id), output_document(output_id, text), upsert=True
                )
            except Exception as exc:  # pymongo's errors; the attempt fails with the reason
                raise StoreError(f"could not store the output {output_id}: {exc}") from exc
            return reference(OUTPUT_REF, output_id)
        try:
            self.files.upload_from_stream(output_id, text.encode())
        except Exception as exc:  # as above
            raise StoreError(f"could not store the output {output_id} in GridFS: {exc}") from exc
        return reference(GRIDFS_REF, output_id)

    def load(self, ref: str) -> Any:
        kind, name = parse_reference(ref)
        try:
            if kind == OUTPUT_REF:
                document = self.outputs.find_one(output_filter(name))
                if document is None:
                    raise StoreError(f"the output {ref} is gone")
                return json.loads(document[JSON])
            if kind == GRIDFS_REF:
                return json.loads(self.files.open_download_stream_by_name(name).read())
            if kind == ITEMS_REF:
                run_id, _, job = name.rpartition("/")
                return self._item_outputs(run_id, job)
        except gridfs.errors.NoFile as exc:
            raise StoreError(f"the output {ref} is gone") from exc
        raise StoreError(f"unknown output reference {ref!r}")

    def _item_outputs(self, run_id: str, job: str) -> list[Any]:
        """The outputs of a fan-out's items in index order; null for an item that failed."""
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
        return outputs

    def resolve(self, results: Mapping[str, Any], references: Mapping[str, str]) -> dict[str, Any]:
        """``results`` with the values of the outputs kept by reference."""
        return {**results, **{name: self.load(ref) for name, ref in references.items()}}
