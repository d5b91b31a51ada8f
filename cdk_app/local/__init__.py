"""The local runner: a workflow run on this machine through the deployed system's own parts.

``runner`` plays the Atlas trigger, EventBridge and Lambda around the real handlers; ``delivery``
is the at-least-once, unordered transport with its fault injection; ``jobs`` loads job code by
path; ``report`` reads a run back and renders it; ``commands`` is the CLI (``run``, ``start``,
``status``).
"""
