"""How the functions sign in to MongoDB, and what each class of function may do there.

Two modes (docs/deploy.md, "Database access"):

- **IAM mode** (``IamAuth``): no password anywhere. Atlas database users in ``$external`` for IAM
  roles (``MONGODB-AWS``), each holding the custom database role of its class of function, which
  grants only the actions and collections that class uses (``privileges``, ``job_privileges``).
  The orchestrator, reconciler, starter and notifier sign in as their own roles; the job
  functions, which have one role per job (or share one), all sign in as their workflow's one
  *job database role*, which they assume, holding the workflow's own job custom role: so the
  database users are 5 per workflow, however many jobs it has.
- **Password mode** (``PasswordAuth``): the Secrets Manager secret holding the connection string,
  read by every function (they all connect), with ``kms:Decrypt`` on its key when it is a
  customer key.

The collections are shared by every workflow of the app (one trigger watches one statuses
collection), so a custom role scopes a class to collections and actions, not to documents. The
job class, whose code is the user's, reads none of them: each workflow has its own job role,
which may read only that workflow's read views (``runtime.documents.views``), made by the
starter and the reconciler; its writes (a report, a lease, an output) go to the collections.
``docs/deploy.md`` says what a job's code can and cannot do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from aws_cdk import Aws, Tags
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager

from constructs import Construct
from constructs.connection import connection_secret
from runtime import contracts
from runtime.documents.outputs import OUTPUT_CHUNKS, OUTPUT_FILES, OUTPUTS
from runtime.documents.views import ViewDefinition, view_definitions
from runtime.store.settings import StoreSettings

if TYPE_CHECKING:
    from awscdk_resources_mongodbatlas import CfnCustomDbRole

ControlClass = Literal["orchestrator", "reconciler", "starter", "notifier"]
"""The classes of function whose code is ours: one custom role each, for every workflow."""
FunctionClass = ControlClass | Literal["job"]
FUNCTION_CLASSES: tuple[FunctionClass, ...] = ("orchestrator", "reconciler", "starter", "notifier", "job")

JOB_DATABASE_TAG = "workflows:job-database"
"""Tag on every job function's role, valued the workflow's name: the job database role of that
workflow trusts the account's roles carrying it (a trust policy naming each job role would grow
with the jobs)."""

FIND, INSERT, UPDATE, REMOVE = "FIND", "INSERT", "UPDATE", "REMOVE"
CREATE_INDEX, LIST_INDEXES, DROP_INDEX = "CREATE_INDEX", "LIST_INDEXES", "DROP_INDEX"
CREATE_COLLECTION, COLL_MOD = "CREATE_COLLECTION", "COLL_MOD"
BYPASS_DOCUMENT_VALIDATION = "BYPASS_DOCUMENT_VALIDATION"


@dataclass(frozen=True, kw_only=True)
class IamAuth:
    """Database users for the functions' IAM roles (``mongodbAuth=iam``)."""

    project_id: str
    """Atlas project holding the cluster (``atlasProjectId``)."""
    cluster_uri: str
    """The cluster's address without credentials (``mongodbUri``), e.g. ``mongodb+srv://cluster0.ab1cd.mongodb.net``."""
    profile: str = "default"
    """Atlas API key profile of the CloudFormation resources (``atlasProfile``); default ``default``."""


@dataclass(frozen=True, kw_only=True)
class PasswordAuth:
    """The connection-string secret (``mongodbAuth=password``): made by the app, or an existing one."""

    secret_arn: str | None = None
    """Existing secret by complete ARN (``mongodbSecretArn``)."""
    secret_name: str | None = None
    """Existing secret by name (``mongodbSecretName``)."""
    kms_key_arn: str | None = None
    """The customer KMS key encrypting that secret (``mongodbSecretKmsKeyArn``); ``None``: AWS's key."""


DatabaseAuth = IamAuth | PasswordAuth


def privileges(
    store: StoreSettings, workflows: Sequence[str] = ()
) -> dict[ControlClass, dict[str, tuple[str, ...]]]:
    """Class of function -> collection -> the Atlas privilege actions it is granted there: what
    its code calls (runtime/store), no more. Only the starter and the reconciler create indexes
    (``store_from_env(create_indexes=True)``): the starter before any job of a run is
    dispatched, the reconciler at its first pass after a deploy; and with them the read views
    of ``workflows`` (``runtime.documents.views``), which needs ``createCollection`` on a view's
    name and ``find`` on the collection under it. The job class's are each workflow's own
    (``job_privileges``)."""
    runs, statuses, items = store.runs_collection, store.statuses_collection, store.items_collection
    leases, notifications = store.leases_collection, store.notifications_collection
    slots, events = store.slots_collection, store.events_collection
    # ``slots`` holds the waiting queue of a job's limits across runs, which has an index.
    indexed = (runs, statuses, leases, items, slots, events, OUTPUTS, OUTPUT_FILES, OUTPUT_CHUNKS)
    index_making: dict[str, tuple[str, ...]] = {name: (CREATE_COLLECTION, CREATE_INDEX) for name in indexed}
    # An older unique index is dropped; the validator that admits only job reports is set.
    index_making[statuses] += (LIST_INDEXES, DROP_INDEX, COLL_MOD)
    index_making[slots] += (LIST_INDEXES, DROP_INDEX)  # and so is the job queue's first index
    for workflow in workflows:
        for view in _views(store, workflow):
            index_making[view.name] = (CREATE_COLLECTION,)
            index_making[view.view_on] = (*index_making.get(view.view_on, ()), FIND)
    # A status the control plane records passes the validator of statuses, which admits only a
    # job attempt's reports from anyone without this privilege (``job_reports_only``).
    recording = (INSERT, BYPASS_DOCUMENT_VALIDATION)
    advancing = {
        runs: (FIND, UPDATE),
        statuses: (FIND, *recording, UPDATE),
        leases: (FIND,),
        items: (FIND, INSERT, UPDATE),
        # A child run's output past what a status carries is kept by reference for its parent.
        OUTPUTS: (FIND, INSERT, UPDATE),
        OUTPUT_FILES: (FIND, INSERT),
        OUTPUT_CHUNKS: (FIND, INSERT),
        # Run concurrency: a run that ends releases its slot and the queue's head takes it; a
        # job's limits across runs: an attempt's ticket and its place, taken and given back.
        slots: (FIND, INSERT, UPDATE),
        # An event job that starts waiting takes an event kept from before.
        events: (FIND,),
    }
    table: dict[ControlClass, dict[str, tuple[str, ...]]] = {
        # Applies status events, dispatches jobs, fans out items, stamps expiries, reads outputs.
        "orchestrator": dict(advancing),
        # Repairs runs with the orchestrator's own code, and fires timers; creates the indexes
        # and gives the documents of runs in flight their workflow (GridFS files are copied).
        "reconciler": _merged(advancing, index_making),
        # Inserts runs, records operations (cancel, redrive, approve, reject, events: kept, then
        # recorded for the attempts waiting), lists runs and
        # reads one as status does (its fan-outs' failed items too); a run of a workflow with
        # ``concurrency`` is inserted queued, takes a slot and starts (or ends, skipped) here.
        "starter": _merged(
            {
                runs: (FIND, INSERT, UPDATE),
                statuses: (FIND, *recording),
                items: (FIND,),
                slots: (FIND, INSERT, UPDATE),
                events: (FIND, INSERT),
            },
            index_making,
        ),
        # Reads the run it reports on; claims each notification once.
        "notifier": {runs: (FIND,), notifications: (FIND, INSERT, UPDATE, REMOVE)},
    }
    return table


def job_privileges(store: StoreSettings, workflow: str) -> dict[str, tuple[str, ...]]:
    """The job wrapper's, for the job functions of ``workflow``: is the attempt still wanted
    (the run), has it ended (statuses), its lease, the outputs it reads (kept by reference, or a
    fan-out's items), all read through the workflow's views and nowhere else; and its writes,
    which views do not take: its report (without ``bypassDocumentValidation``, so the validator
    of statuses admits a job attempt's reports only), its lease and the lease's renewals
    (inserted: it may update no lease, its own or another's), its output kept by reference
    (inserted, never replaced)."""
    grants: dict[str, tuple[str, ...]] = {view.name: (FIND,) for view in _views(store, workflow)}
    return grants | {
        store.statuses_collection: (INSERT,),
        store.leases_collection: (CREATE_COLLECTION, INSERT),
        OUTPUTS: (INSERT,),
        OUTPUT_FILES: (INSERT,),
        OUTPUT_CHUNKS: (INSERT,),
    }


def _views(store: StoreSettings, workflow: str) -> list[ViewDefinition]:
    return view_definitions(workflow, store.read_collections)


def _merged(*grants: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    merged: dict[str, tuple[str, ...]] = {}
    for grant in grants:
        for collection, actions in grant.items():
            merged[collection] = tuple(dict.fromkeys((*merged.get(collection, ()), *actions)))
    return merged


def custom_role_name(store: StoreSettings, function_class: FunctionClass, workflow: str | None = None) -> str:
    """The Atlas custom role of a class, one per app and database; of the job class, one per
    workflow (Atlas names: letters, digits, ``-`` and ``_``; a workflow id is ``[a-z][a-z0-9_]*``)."""
    if function_class == "job":
        if workflow is None:
            raise ValueError("the job class has one custom role per workflow: name the workflow")
        return f"{store.database}-job-{workflow}"
    return f"{store.database}-{function_class}"


class DatabaseAccess(Construct):
    """In the shared stack: the secret (password mode), or the custom database role of each class
    of function (IAM mode), which every workflow's database users hold, and the job role of
    each of ``workflows``, which reads only that workflow's views."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        auth: DatabaseAuth,
        store: StoreSettings,
        secret: secretsmanager.ISecret | None = None,
        workflows: Sequence[str] = (),
    ) -> None:
        """``secret``: in password mode, a secret made elsewhere; default: made or imported here
        from ``auth`` (as ``MongoDbSecret`` beside this construct, where it always was).
        ``workflows``: the ids of the workflows whose functions sign in with these roles (IAM
        mode)."""
        super().__init__(scope, construct_id)
        self.auth = auth
        self.store = store
        self.workflows = tuple(workflows)
        self.secret: secretsmanager.ISecret | None = None
        self._custom_roles: dict[str, CfnCustomDbRole] = {}
        if isinstance(auth, PasswordAuth):
            self.secret = secret or connection_secret(
                scope, "MongoDbSecret", secret_arn=auth.secret_arn, secret_name=auth.secret_name
            )
            return
        if secret is not None:
            raise ValueError(f"{self.node.path}: IAM mode reads no secret; give none")
        for function_class, grants in privileges(store, self.workflows).items():
            self._custom_role(
                f"{function_class.capitalize()}DbRole", custom_role_name(store, function_class), grants
            )
        for workflow in self.workflows:
            self._custom_role(
                f"JobDbRole-{workflow}",
                custom_role_name(store, "job", workflow),
                job_privileges(store, workflow),
            )

    def _custom_role(self, construct_id: str, name: str, grants: Mapping[str, tuple[str, ...]]) -> None:
        from awscdk_resources_mongodbatlas import Action, CfnCustomDbRole, Resource

        auth = self.auth
        assert isinstance(auth, IamAuth)
        by_action: dict[str, list[str]] = {}
        for collection, actions in grants.items():
            for action in actions:
                by_action.setdefault(action, []).append(collection)
        role = CfnCustomDbRole(
            self,
            construct_id,
            project_id=auth.project_id,
            profile=auth.profile,
            role_name=name,
            actions=[
                Action(
                    action=action,
                    resources=[
                        Resource(db=self.store.database, collection=name) for name in sorted(collections)
                    ],
                )
                for action, collections in sorted(by_action.items())
            ],
        )
        role.add_metadata("cfn-lint", {"config": {"ignore_checks": ["E3006"]}})
        self._custom_roles[name] = role

    @property
    def custom_roles(self) -> Mapping[str, CfnCustomDbRole]:
        """Role name (``custom_role_name``) -> the custom database role (IAM mode; empty in
        password mode)."""
        return MappingProxyType(self._custom_roles)


class FunctionDatabaseAccess(Construct):
    """In a workflow's stack: each function's environment and grants for its class, and in IAM
    mode the database users and the workflow's job database role."""

    def __init__(self, scope: Construct, construct_id: str, access: DatabaseAccess, workflow: str) -> None:
        super().__init__(scope, construct_id)
        self._access = access
        self._workflow = workflow
        self._job_database_role: iam.Role | None = None

    def environment(self, function_class: FunctionClass) -> dict[str, str]:
        """Where and as whom a function of ``function_class`` connects (runtime/store/connection.py)."""
        store = self._access.store
        names = {
            contracts.MONGODB_DATABASE: store.database,
            contracts.RUNS_COLLECTION: store.runs_collection,
            contracts.STATUSES_COLLECTION: store.statuses_collection,
        }
        if function_class == "job":  # it reads through this workflow's views alone
            names[contracts.WORKFLOW_NAME] = self._workflow
        auth = self._access.auth
        if isinstance(auth, PasswordAuth):
            assert self._access.secret is not None
            return {contracts.MONGODB_SECRET_ARN: self._access.secret.secret_arn} | names
        signing_in = {
            contracts.MONGODB_AUTH: contracts.MONGODB_AWS_MECHANISM,
            contracts.MONGODB_URI: auth.cluster_uri,
        }
        if function_class == "job":
            signing_in[contracts.MONGODB_ROLE_ARN] = self.job_database_role().role_arn
        return signing_in | names

    def grant(self, role: iam.Role, function_class: FunctionClass) -> None:
        """What ``role`` needs to sign in as its class: read the secret (password mode); a
        database user (IAM mode); for a job's role, assuming the job database role."""
        auth = self._access.auth
        if isinstance(auth, PasswordAuth):
            assert self._access.secret is not None
            self._access.secret.grant_read(role)
            if auth.kms_key_arn is not None:
                role.add_to_policy(
                    iam.PolicyStatement(
                        sid="DecryptMongoDbSecret",
                        actions=["kms:Decrypt"],
                        resources=[auth.kms_key_arn],
                        conditions={
                            "StringEquals": {"kms:ViaService": f"secretsmanager.{Aws.REGION}.amazonaws.com"}
                        },
                    )
                )
            return
        if function_class == "job":
            database_role = self.job_database_role()
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="SignInToMongoDb", actions=["sts:AssumeRole"], resources=[database_role.role_arn]
                )
            )
            Tags.of(role).add(JOB_DATABASE_TAG, self._workflow)
            return
        self._database_user(f"{function_class.capitalize()}DatabaseUser", role, function_class)

    def job_database_role(self) -> iam.Role:
        """The one role every job function of the workflow assumes to sign in (IAM mode): it may
        do nothing in AWS; in MongoDB, what the ``job`` custom role grants."""
        if self._job_database_role is None:
            role = iam.Role(
                self,
                "JobDatabaseRole",
                description=f"The MongoDB identity of the job functions of workflow {self._workflow}",
                assumed_by=iam.AccountRootPrincipal().with_conditions(
                    {"StringEquals": {f"aws:PrincipalTag/{JOB_DATABASE_TAG}": self._workflow}}
                ),
            )
            self._job_database_role = role
            self._database_user("JobDatabaseUser", role, "job")
        return self._job_database_role

    def _database_user(self, construct_id: str, role: iam.IRole, function_class: FunctionClass) -> None:
        from awscdk_resources_mongodbatlas import (
            CfnDatabaseUser,
            CfnDatabaseUserPropsAwsiamType,
            RoleDefinition,
        )

        auth = self._access.auth
        assert isinstance(auth, IamAuth)
        if function_class == "job" and self._workflow not in self._access.workflows:
            raise ValueError(
                f"{self.node.path}: the shared DatabaseAccess has no job role for workflow "
                f"{self._workflow!r}: give it in DatabaseAccess(workflows=...)"
            )
        role_name = custom_role_name(self._access.store, function_class, self._workflow)
        user = CfnDatabaseUser(
            self,
            construct_id,
            project_id=auth.project_id,
            profile=auth.profile,
            database_name=contracts.MONGODB_AWS_AUTH_SOURCE,
            username=role.role_arn,
            awsiam_type=CfnDatabaseUserPropsAwsiamType.ROLE,
            roles=[RoleDefinition(role_name=role_name, database_name="admin")],
            description=f"The {function_class} functions of workflow {self._workflow}",
        )
        user.add_metadata("cfn-lint", {"config": {"ignore_checks": ["E3006"]}})
        custom_role = self._access.custom_roles.get(role_name)
        if custom_role is not None:
            user.node.add_dependency(custom_role)


def workflow_database_access(
    scope: Construct,
    workflow: str,
    store: StoreSettings,
    database: DatabaseAccess | None,
    secret: secretsmanager.ISecret | None,
) -> FunctionDatabaseAccess:
    """A ``Workflow``'s access from its props: the shared ``database``, or password mode with
    ``secret`` (a CDK app of one's own, as before IAM mode existed)."""
    if (database is None) == (secret is None):
        raise ValueError(f"{scope.node.path}: give WorkflowProps database or secret, one of them")
    access = database or DatabaseAccess(scope, "Database", PasswordAuth(), store, secret)
    return FunctionDatabaseAccess(scope, "DatabaseAccess", access, workflow)
