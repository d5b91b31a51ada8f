"""A module beside handler.py: the folder is on the path at run time."""


def render(text: str) -> str:
    return f"<pre>{text}</pre>"
