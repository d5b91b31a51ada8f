"""The Secrets Manager secret holding the MongoDB connection string, made or imported."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_secretsmanager as secretsmanager

from constructs import Construct


def connection_secret(
    scope: Construct, construct_id: str, *, secret_arn: str | None = None, secret_name: str | None = None
) -> secretsmanager.ISecret:
    """An existing secret by complete ARN or by name, or (neither given) a new one holding a
    placeholder: the real URI is put there by hand after the first deploy and never passes
    through a template. The secret's string is the URI, or JSON with a ``uri`` key."""
    if secret_arn is not None and secret_name is not None:
        raise ValueError(f"{scope.node.path}/{construct_id}: give secret_arn or secret_name, not both")
    if secret_arn is not None:
        return secretsmanager.Secret.from_secret_complete_arn(scope, construct_id, secret_arn)
    if secret_name is not None:
        return secretsmanager.Secret.from_secret_name_v2(scope, construct_id, secret_name)
    secret = secretsmanager.Secret(
        scope,
        construct_id,
        description="MongoDB connection string for the workflows: put the URI here after deploying",
        generate_secret_string=secretsmanager.SecretStringGenerator(
            secret_string_template='{"uri": ""}', generate_string_key="placeholder"
        ),
    )
    Validations.of(secret).acknowledge(
        Acknowledgment(
            id="AwsSolutions-SMG4",
            reason="The connection string is issued by MongoDB Atlas; it is rotated there and then "
            "pasted into this secret, which Secrets Manager cannot do on its own schedule.",
        )
    )
    return secret


def status_key_secret(scope: Construct, construct_id: str) -> secretsmanager.Secret:
    """The control plane's status signing key (docs/architecture.md, "Trust"): 64 hex digits
    Secrets Manager generates at deploy, so no template holds it. Read by the orchestrator,
    reconciler, starter and notifier, and by operators (the CLI, the console); by no job."""
    secret = secretsmanager.Secret(
        scope,
        construct_id,
        description="Signs the statuses the control plane and operators write; job functions never read it",
        generate_secret_string=secretsmanager.SecretStringGenerator(
            password_length=64,
            exclude_uppercase=True,
            exclude_punctuation=True,
            include_space=False,
            exclude_characters="ghijklmnopqrstuvwxyz",
            require_each_included_type=False,
        ),
    )
    Validations.of(secret).acknowledge(
        Acknowledgment(
            id="AwsSolutions-SMG4",
            reason="Rotating the status key would make every attempt in flight unable to report (its "
            "key derives from this one); it is replaced by hand between deploys with no run in flight.",
        )
    )
    return secret
