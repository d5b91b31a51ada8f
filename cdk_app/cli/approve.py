"""The CLI's answers to an approval job: ``approve RUN_ID JOB [--output JSON]`` and ``reject
RUN_ID JOB [--reason TEXT]`` (registered in ``cdk_app.cli.main``). Like ``cancel``, each records a
status in whatever database ``--mongo-uri`` names, and whatever delivers its statuses (the
deployed stack, the dev server) applies it; an answer the job cannot take is a ``RunError``."""

from __future__ import annotations

import argparse

from cdk_app.cli.arguments import Subparsers, add_store_arguments, json_argument, open_client
from cdk_app.errors import EXIT_OK


def add_approve(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "approve",
        help="approve a job that waits for an approval",
        description="Approve an approval job that is waiting: it succeeds with --output as its output.",
    )
    parser.add_argument("run_id", metavar="RUN_ID")
    parser.add_argument("job", metavar="JOB")
    parser.add_argument("--output", metavar="JSON", help="the job's output, a JSON value (default: none)")
    add_store_arguments(parser)
    parser.set_defaults(run=_approve, prog=parser.prog)


def add_reject(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "reject",
        help="reject a job that waits for an approval",
        description="Reject an approval job that is waiting: it fails (with --reason), and the run with it.",
    )
    parser.add_argument("run_id", metavar="RUN_ID")
    parser.add_argument("job", metavar="JOB")
    parser.add_argument("--reason", metavar="TEXT", help="why, recorded with the failure")
    add_store_arguments(parser)
    parser.set_defaults(run=_reject, prog=parser.prog)


def _approve(args: argparse.Namespace) -> int:
    output = json_argument("--output", args.output)
    receipt = open_client(args).approve(args.run_id, args.job, output)
    _print(receipt.created, "approval", args)
    return EXIT_OK


def _reject(args: argparse.Namespace) -> int:
    receipt = open_client(args).reject(args.run_id, args.job, args.reason)
    _print(receipt.created, "rejection", args)
    return EXIT_OK


def _print(created: bool, what: str, args: argparse.Namespace) -> None:
    if created:
        print(f"{what} of {args.job} in run {args.run_id} recorded")
    else:
        print(f"{what} of {args.job} in run {args.run_id} was recorded before (it is applied once)")
