"""The documents of outputs kept by reference (``runtime.store.outputs``): one per output in
``outputs`` (``{_id: <run id>/<job>/<attempt>[/<index>], json: <the output as JSON text>}``),
or a GridFS file of the bucket ``outputs`` past what one document holds; and the references
that name them in statuses and events."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from runtime import limits
from runtime.documents import ID, WORKFLOW

OUTPUTS = "outputs"
"""The collection (and GridFS bucket) of outputs kept by reference."""

JSON = "json"

OUTPUT_REF, GRIDFS_REF, ITEMS_REF, RUN_REF = "output", "gridfs", "items", "run"
"""The kinds of reference: ``output:<id>``, ``gridfs:<id>``, ``items:<run id>/<job>``, and
``run:<run id>/<job>`` for an output the run document holds that a job event had no room for."""


def run_output_ref(run_id: str, job: str) -> str:
    return f"{RUN_REF}:{run_id}/{job}"


def output_document(output_id: str, text: str, workflow: str) -> dict[str, Any]:
    """An output of ``workflow`` (the field its read view selects it by)."""
    return {ID: output_id, JSON: text, WORKFLOW: workflow}


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
GRIDFS_FILES_ID = "files_id"
"""The field of a chunk naming its file."""
GRIDFS_CHUNK_BYTES = 255 * 1024
"""GridFS's default chunk size, which the job wrapper writes its files in."""
GRIDFS_CHUNKS_INDEX = {"files_id": 1, "n": 1}
"""The indexes ``GridFSBucket`` makes on a bucket's ``files`` and ``chunks`` (its ``_F_INDEX``
and ``_C_INDEX``): GridFS's field names, not ours."""


def gridfs_chunks(file_id: str, data: bytes) -> list[dict[str, Any]]:
    """The chunks of a GridFS file holding ``data``, as ``GridFSBucket`` writes them."""
    return [
        {GRIDFS_FILES_ID: file_id, "n": n, "data": data[start : start + GRIDFS_CHUNK_BYTES]}
        for n, start in enumerate(range(0, len(data), GRIDFS_CHUNK_BYTES))
    ]


def gridfs_file(file_id: str, filename: str, length: int, date: datetime) -> dict[str, Any]:
    """The description of a GridFS file, written once its chunks are: GridFS's fields."""
    return {
        ID: file_id,
        "length": length,
        "chunkSize": GRIDFS_CHUNK_BYTES,
        "uploadDate": date.replace(microsecond=date.microsecond // 1000 * 1000),
        "filename": filename,
    }


def stored_as_is(value: Any) -> bool:
    """Whether a JSON value can be a field of a MongoDB document, and of a status that passes
    the Atlas trigger's JavaScript, unchanged: field names MongoDB takes as they are (not empty,
    no ``.``, no leading ``$``, no NUL), integers a JavaScript double holds exactly (so within
    BSON's 64 bits too), and nesting a run document can hold (``limits.OUTPUT_MAX_DEPTH``). Any
    other value is kept as JSON text, which keeps every JSON value exactly."""
    return not_stored_as_is(value) is None


def not_stored_as_is(value: Any) -> str | None:
    """Why ``value`` is not ``stored_as_is``, naming where (``$.a.b``); None when it is."""
    pending: list[tuple[Any, int, str]] = [(value, 1, "$")]
    while pending:
        current, depth, path = pending.pop()
        if isinstance(current, bool):
            continue
        if isinstance(current, int) and abs(current) > limits.JSON_SAFE_INTEGER:
            return f"the integer at {path} is beyond ±(2^53 - 1), which a JavaScript number holds exactly"
        if isinstance(current, dict | list | tuple) and depth > limits.OUTPUT_MAX_DEPTH:
            return f"it is nested deeper than {limits.OUTPUT_MAX_DEPTH} levels at {path}"
        if isinstance(current, dict):
            for key in current:
                if not _field_name(key):
                    return (
                        f"the key {key!r} at {path} is not a MongoDB field name (empty, with a '.', "
                        "a leading '$' or a NUL)"
                    )
            pending.extend((item, depth + 1, f"{path}.{key}") for key, item in current.items())
        elif isinstance(current, list | tuple):
            pending.extend((item, depth + 1, f"{path}[{index}]") for index, item in enumerate(current))
    return None


def _field_name(key: object) -> bool:
    if not isinstance(key, str) or not key or key.startswith("$"):
        return False
    return "." not in key and "\0" not in key
