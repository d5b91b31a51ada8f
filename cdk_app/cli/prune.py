"""The CLI's ``prune`` command (registered in ``cdk_app.cli.main``): delete the versions of a
workflow's job functions that no running run invokes, keeping the newest of each, and the
functions a deploy retained for jobs the spec no longer has (``runtime.service.prune``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cdk_app.cli.arguments import Subparsers, add_store_arguments, open_store
from cdk_app.errors import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, CommandError
from cdk_app.project import workflows_dir

DEFAULT_KEEP = 3


def add_prune(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "prune",
        help="delete old versions of a workflow's job functions that no running run invokes",
        description="Delete the versions of WORKFLOW's job functions that no running run invokes, "
        "keeping the newest N of each, and the functions a deploy kept for jobs the spec no longer "
        "has once no running run invokes them. Run it after deploying the spec folder it reads. "
        "Needs AWS credentials (Lambda's List* and DeleteFunction on the job functions).",
    )
    parser.add_argument("workflow", metavar="WORKFLOW")
    parser.add_argument(
        "--keep",
        metavar="N",
        type=int,
        default=DEFAULT_KEEP,
        help=f"newest versions kept (default: {DEFAULT_KEEP})",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    parser.add_argument(
        "--layers",
        action="store_true",
        help="then also the versions of the dependency layer no function version uses, keeping the "
        "newest N (the layer is every workflow's: this reads every function of the account)",
    )
    parser.add_argument(
        "--workflows", metavar="DIR", type=Path, help="the spec folder (default: cdk.json's workflowsDir)"
    )
    parser.add_argument("--region", metavar="REGION", help="the stack's region (default: AWS's own settings)")
    add_store_arguments(parser)
    parser.set_defaults(run=_prune, prog=parser.prog)


def _prune(args: argparse.Namespace) -> int:
    import boto3

    from runtime.aws.lambda_versions import LambdaVersions, PruneError
    from runtime.definition.loader import workflow_in_folder
    from runtime.service.prune import prune_layers, prune_versions

    if args.keep < 1:
        raise CommandError(
            f"--keep must be at least 1 (runs start on the newest version), got {args.keep}", EXIT_USAGE
        )
    folder = args.workflows if args.workflows is not None else Path(workflows_dir())
    definition = workflow_in_folder(folder, args.workflow)
    store = open_store(args)
    try:
        client = boto3.client("lambda", region_name=args.region)
        lambda_versions = LambdaVersions(client)
        pruned = prune_versions(lambda_versions, store, definition, args.keep, dry_run=args.dry_run)
        layers = (
            prune_layers(lambda_versions, definition, args.keep, dry_run=args.dry_run)
            if args.layers
            else None
        )
    except PruneError as error:
        raise CommandError(str(error), EXIT_PROBLEMS) from error
    except Exception as error:  # boto3 without a region or credentials
        if type(error).__module__.startswith("botocore"):
            raise CommandError(f"cannot reach Lambda: {error}", EXIT_PROBLEMS) from error
        raise
    verb = "would delete" if args.dry_run else "deleted"
    for name, version in pruned.versions:
        print(f"{verb} {name}:{version}")
    for name in pruned.functions:
        print(f"{verb} {name} (its job is no longer in the spec)")
    for name, version in pruned.kept_for_runs:
        print(f"kept {name}:{version} (a running run invokes it)")
    for name, version in layers.versions if layers else ():
        print(f"{verb} layer {name}:{version}")
    for name, version in layers.kept_in_use if layers else ():
        print(f"kept layer {name}:{version} (a function version uses it)")
    if not (pruned.versions or pruned.functions or (layers and layers.versions)):
        print("nothing to prune")
    return EXIT_OK
