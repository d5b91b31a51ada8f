"""The CLI, ``python -m cdk_app <command>``: argparse and printing only. ``main`` (``cdk_app.cli.main``)
builds the parser from each command module's ``add_<command>`` functions; the commands call the
runtime's use cases, the local cloud and the console. Nothing imports this package back."""
