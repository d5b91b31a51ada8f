"""The run console: the runs and each run as pictures in the browser, live (``python -m cdk_app
console``, and the dev server's ``--console-port``).

``listing`` reads the runs page (keyset pages over the run indexes, counts by state), ``views``
turns a run document and its statuses into what the run page draws, ``app`` is the Starlette
application (pages, JSON, actions, the Content Security Policy) and ``server`` runs it with
uvicorn (the command is ``cdk_app.cli.console``). The browser side is in ``static/``: plain
JavaScript that draws SVG from the layout of ``@dagrejs/dagre``, served from ``node_modules``
like everything else.
"""

# Where the console listens unless told: here, not in ``server``, so that the CLI's argument
# parser reads them without importing the web server.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
