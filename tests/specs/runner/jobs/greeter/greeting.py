"""A module beside the handler."""

from __future__ import annotations


def greet(name: str) -> str:
    return f"hello, {name}"
