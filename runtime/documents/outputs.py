"""The documents of outputs kept by reference (``runtime.store.outputs``): one per output in
``outputs`` (``{_id: <run id>/<job>/<attempt>[/<index>], json: <the output as JSON text>}``),
or a GridFS file of the bucket ``outputs`` past what one document holds; and the references
that name them in statuses and events."""

from __future__ import annotations

import re
from typing import Any

from runtime.documents import ID

OUTPUTS = "outputs"
"""The collection (and GridFS bucket) of outputs kept by reference."""

JSON = "json"

OUTPUT_REF, GRIDFS_REF, ITEMS_REF = "output", "gridfs", "items"
"""The kinds of reference: ``output:<id>``, ``gridfs:<id>``, ``items:<run id>/<job>``."""


def output_document(output_id: str, text: str) -> dict[str, Any]:
    return {ID: output_id, JSON: text}


def output_filter(output_id: str) -> dict[str, Any]:
    return {ID: output_id}


SIZE = "size"
"""What ``json_size_pipeline`` answers: the output's JSON text in bytes."""


def json_size_pipeline(output_id: str) -> list[dict[str, Any]]:
    """The size of an output's JSON text, measured by the server so the text is not read."""
    return [{"$match": output_filter(output_id)}, {"$project": {SIZE: {"$strLenBytes": f"${JSON}"}}}]


def run_outputs_filter(run_id: str) -> dict[str, Any]:
    """Selects every output the run keeps by reference: their ids begin with the run id."""
    return {ID: {"$regex": f"^{re.escape(run_id)}/"}}


def reference(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def parse_reference(ref: str) -> tuple[str, str]:
    """``kind:name`` -> (kind, name)."""
    kind, _, name = ref.partition(":")
    return kind, name


OUTPUT_FILES = f"{OUTPUTS}.files"
OUTPUT_CHUNKS = f"{OUTPUTS}.chunks"
"""The collections of the GridFS bucket ``outputs``: a file's description, and its chunks."""

GRIDFS_FILES_INDEX = {"filename": 1, "uploadDate": 1}
GRIDFS_CHUNKS_INDEX = {"files_id": 1, "n": 1}
"""The indexes ``GridFSBucket`` makes on a bucket's ``files`` and ``chunks`` (its ``_F_INDEX``
and ``_C_INDEX``): GridFS's field names, not ours."""
