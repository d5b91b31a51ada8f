"""The CLI's ``run``, ``start`` and ``status`` commands (registered in ``cdk_app.cli``).

Every expected problem (bad input, a spec with mistakes, MongoDB out of reach, broken job code)
is a ``CommandError`` (or a ``StoreError`` / ``RunError``) that ``cdk_app.cli.main`` turns into
a one-line message and an exit code (``cdk_app.errors``), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pymongo
import pymongo.errors
from rich.console import Console

from cdk_app.embedded_mongo import EmbeddedMongo
from cdk_app.errors import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, CommandError
from cdk_app.local.delivery import FaultSettings
from cdk_app.local.jobs import load_job_handlers
from cdk_app.local.render import Progress, print_summary
from cdk_app.local.report import RunReport, summarize
from cdk_app.local.runner import LocalRunner, RunOptions
from runtime.connection import cached_client
from runtime.definition.loader import load_workflow
from runtime.definition.model import Workflow
from runtime.documents import RunState
from runtime.errors import SpecError
from runtime.runs import start_run
from runtime.settings import StoreSettings
from runtime.store import MongoStore

if TYPE_CHECKING:
    from cdk_app.cli import Subparsers

SERVER_SELECTION_SECONDS = 3.0
"""How long to wait for an unreachable MongoDB before saying so."""


def _add_store_arguments(parser: argparse.ArgumentParser, uri_required: bool) -> None:
    parser.add_argument(
        "--mongo-uri",
        required=uri_required,
        metavar="URI",
        help="MongoDB connection string" + ("" if uri_required else " (default: start an embedded server)"),
    )
    parser.add_argument(
        "--database", default=StoreSettings().database, help=f"default: {StoreSettings().database}"
    )


def _redacted(uri: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", uri)


def connect(uri: str, database: str) -> MongoStore:
    """A MongoStore on ``uri``, after checking the server answers (a short wait, not pymongo's 30 s)."""
    try:
        probe: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            uri, serverSelectionTimeoutMS=int(SERVER_SELECTION_SECONDS * 1000)
        )
    except (pymongo.errors.ConfigurationError, ValueError) as exc:
        raise CommandError(f"invalid --mongo-uri {_redacted(uri)!r}: {exc}", EXIT_USAGE) from exc
    try:
        probe.admin.command("ping")
    except pymongo.errors.PyMongoError as exc:
        reason = str(exc).split(", Timeout:")[0]
        raise CommandError(f"cannot reach MongoDB at {_redacted(uri)}: {reason}") from exc
    finally:
        probe.close()
    try:
        return MongoStore(cached_client(uri), StoreSettings(database=database))
    except pymongo.errors.InvalidName as exc:
        raise CommandError(f"invalid --database {database!r}: {exc}", EXIT_USAGE) from exc


def _load_spec(path: str) -> Workflow:
    if not Path(path).is_file():
        raise CommandError(f"no such file: {path}", EXIT_USAGE)
    try:
        return load_workflow(path)
    except SpecError as error:
        count = len(error.problems)
        raise CommandError(
            "\n".join([*map(str, error.problems), f"{count} problem{'s' if count != 1 else ''} found"])
        ) from None


def _run_input(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CommandError(f"--input is not valid JSON: {exc}", EXIT_USAGE) from exc
    if not isinstance(value, dict):
        raise CommandError(f"--input must be a JSON object, got {type(value).__name__}: {text}", EXIT_USAGE)
    return value


# --- run -----------------------------------------------------------------------------------------


def add_run(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a workflow on this machine (embedded MongoDB, in-process jobs)",
        description="Run a workflow locally through the real handlers, with live progress and a summary.",
    )
    parser.add_argument("spec", metavar="SPEC", help="a spec file")
    parser.add_argument("--input", metavar="JSON", help="the run input, a JSON object (default: {})")
    _add_store_arguments(parser, uri_required=False)
    parser.add_argument("--json", action="store_true", help="print the outcome as one JSON object on stdout")
    parser.add_argument(
        "--faults",
        metavar="LIST",
        help="inject faults: duplicate=N, reorder, crash=P, crash_jobs=P (comma-separated)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the faults' random choices (default: 0)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=RunOptions().timeout,
        metavar="SECONDS",
        help=f"give up after this long without a new status (default: {RunOptions().timeout:g})",
    )
    parser.set_defaults(run=_run, prog=parser.prog)


def _run(args: argparse.Namespace) -> int:
    try:
        faults = FaultSettings.parse(args.faults, args.seed)
    except ValueError as exc:
        raise CommandError(f"--faults: {exc}", EXIT_USAGE) from exc
    if not math.isfinite(args.timeout) or args.timeout <= 0:
        raise CommandError(f"--timeout must be positive, got {args.timeout:g}", EXIT_USAGE)
    run_input = _run_input(args.input)
    workflow = _load_spec(args.spec)
    handlers = load_job_handlers(workflow)
    progress = Console(stderr=True, highlight=False)
    # Job code runs in this process; logs (the stub's too) must go to stderr like the progress.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    server: EmbeddedMongo | None = None
    try:
        if args.mongo_uri is None:
            with progress.status("starting the embedded MongoDB server"):
                server = EmbeddedMongo()
        store = connect(server.uri if server is not None else args.mongo_uri, args.database)
        runner = LocalRunner(
            store,
            workflow,
            handlers,
            Progress(progress, workflow, store),
            RunOptions(faults=faults, timeout=args.timeout),
        )
        # Job code prints: while it runs, stdout is stderr, so --json output stays one object.
        with contextlib.redirect_stdout(sys.stderr):
            report = runner.run(run_input)
    finally:
        if server is not None:
            server.stop()
    _print_report(args, report)
    return EXIT_OK if report.status == RunState.SUCCEEDED else EXIT_PROBLEMS


def _print_report(args: argparse.Namespace, report: RunReport) -> None:
    if args.json:
        print(json.dumps(report.to_json(), default=str))
        if report.error:
            print(f"{args.prog}: {report.error.strip().splitlines()[0]}", file=sys.stderr)
    else:
        print_summary(Console(highlight=False), report)


# --- start ---------------------------------------------------------------------------------------


def add_start(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "start",
        help="start a run on a deployed database and print its id",
        description="Start a run (idempotently on --run-id) the way the starter function does.",
    )
    parser.add_argument("spec", metavar="SPEC", help="a spec file")
    _add_store_arguments(parser, uri_required=True)
    parser.add_argument("--run-id", metavar="ID", help="a run id of your choosing (default: a new one)")
    parser.add_argument("--input", metavar="JSON", help="the run input, a JSON object (default: {})")
    parser.set_defaults(run=_start, prog=parser.prog)


def _start(args: argparse.Namespace) -> int:
    run_input = _run_input(args.input)
    workflow = _load_spec(args.spec)
    store = connect(args.mongo_uri, args.database)
    store.ensure_indexes()
    started = start_run(store, workflow, run_id=args.run_id, input=run_input)
    if not started.created:
        print(
            f"run {started.run_id} existed already with the same input; nothing new started", file=sys.stderr
        )
    print(started.run_id)
    return EXIT_OK


# --- status --------------------------------------------------------------------------------------


def add_status(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show a run: its status, phase and jobs",
        description="Show a run from its run document: status, current phase and a line per job.",
    )
    parser.add_argument("run_id", metavar="RUN_ID")
    _add_store_arguments(parser, uri_required=True)
    parser.add_argument("--json", action="store_true", help="print the run as one JSON object")
    parser.set_defaults(run=_status, prog=parser.prog)


def _status(args: argparse.Namespace) -> int:
    store = connect(args.mongo_uri, args.database)
    report = summarize(store, args.run_id)
    if report is None:
        raise CommandError(f"unknown run {args.run_id!r} in database {args.database!r}")
    _print_report(args, report)
    return EXIT_OK
