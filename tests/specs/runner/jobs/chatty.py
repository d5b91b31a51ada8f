"""Prints to stdout and logs, as real job code does."""

from __future__ import annotations

import logging
import sys
from typing import Any


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    print("chatty job says hello on stdout")
    sys.stdout.write("and writes to sys.stdout directly\n")
    logging.getLogger("chatty").warning("and logs a warning")
    return {"said": "hello", "request_id": getattr(context, "aws_request_id", None) is not None}
