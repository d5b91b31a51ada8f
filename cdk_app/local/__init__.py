"""The cloud in one process: a workflow run on this machine through the deployed system's own parts.

``cloud`` plays the Atlas trigger, EventBridge's rules and Lambda around the real use cases;
``delivery`` is the at-least-once, unordered transport and ``faults`` its fault injection;
``jobs`` loads job code by path; ``timeouts`` enforces a job's Lambda timeout; ``runner`` is one
run (the ``run`` command) and ``dev`` the dev server; ``snapshots`` keeps the job code runs are
pinned to and ``versions`` pins them (and upgrades them); ``embedded_mongo`` starts SecantusDB. No
argparse here: the commands are in ``cdk_app.cli``.
"""

# The defaults the CLI's arguments show: here, so that building its parser imports none of the
# modules above.
DEFAULT_DATA_DIR = ".workflows-dev"
"""Where the dev server keeps its data unless told."""
RUN_TIMEOUT_SECONDS = 300.0
"""Seconds without a new status after which ``run`` gives up on its run, unless told."""
