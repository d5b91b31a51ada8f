"""A single-file job: only this file is bundled, so a module beside it is not there at run time."""

from typing import Any

from layout_helpers import shout


def handler(*args: Any) -> dict[str, Any]:
    return {"said": shout("hi")}
