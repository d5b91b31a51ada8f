"""Beside a single-file job, but not bundled with it."""


def shout(text: str) -> str:
    return text.upper()
