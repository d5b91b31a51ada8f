"""Where the control plane's status key comes from (docs/architecture.md, "Trust"): in a deployed
function, the Secrets Manager secret named by ``STATUS_KEY_SECRET_ARN``; for the CLI and console,
``WORKFLOWS_STATUS_KEY``, the deployed secret named by ``WORKFLOWS_STATUS_KEY_SECRET_ARN``, or the
key a local control plane keeps in its own database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from runtime import contracts
from runtime.documents.signatures import (
    LOCAL_KEYS_COLLECTION,
    StatusKeys,
    keys_from_local_document,
    local_key_document,
    local_key_filter,
)
from runtime.errors import StoreError
from runtime.store.mongo import MongoStore
from runtime.store.secrets import read_secret


def keys_from_secret(arn: str, secrets_client: Any | None = None) -> StatusKeys:
    """The key in a Secrets Manager secret: its string is the key as hex."""
    text = read_secret(arn, "the status key secret", secrets_client)
    try:
        return StatusKeys.from_text(text, f"the status key secret {arn}")
    except ValueError as exc:
        raise StoreError(str(exc)) from exc


def function_keys(environ: Mapping[str, str], secrets_client: Any | None = None) -> StatusKeys | None:
    """A deployed function's key: None in a job function, which is given none."""
    arn = environ.get(contracts.STATUS_KEY_SECRET_ARN)
    return None if not arn else keys_from_secret(arn, secrets_client)


def operator_keys(
    store: MongoStore, environ: Mapping[str, str], secrets_client: Any | None = None
) -> StatusKeys:
    """The key the CLI and console sign operations with, from the first of: the variable holding
    it, the deployed secret named by a variable, the local control plane's key on ``store`` (made
    here when there is none yet: a run started before the dev server is signed with the key the
    dev server then finds)."""
    text = environ.get(contracts.OPERATOR_STATUS_KEY)
    if text:
        try:
            return StatusKeys.from_text(text, contracts.OPERATOR_STATUS_KEY)
        except ValueError as exc:
            raise StoreError(str(exc)) from exc
    arn = environ.get(contracts.OPERATOR_STATUS_KEY_SECRET_ARN)
    if arn:
        return keys_from_secret(arn, secrets_client)
    return local_keys(store)


def read_local_keys(store: MongoStore) -> StatusKeys | None:
    try:
        document = store.database[LOCAL_KEYS_COLLECTION].find_one(local_key_filter())
    except PyMongoError as exc:
        raise StoreError(f"could not read the local status key: {exc}") from exc
    return keys_from_local_document(document)


def local_keys(store: MongoStore) -> StatusKeys:
    """The local control plane's key on ``store``'s database, made on first use; every process
    that starts one on the same database gets the same key."""
    existing = read_local_keys(store)
    if existing is not None:
        return existing
    try:
        store.database[LOCAL_KEYS_COLLECTION].insert_one(local_key_document(StatusKeys.generate()))
    except DuplicateKeyError:
        pass  # another process made it first: theirs is the key
    except PyMongoError as exc:
        raise StoreError(f"could not keep the local status key: {exc}") from exc
    made = read_local_keys(store)
    if made is None:
        raise StoreError("the local status key was stored but cannot be read back")
    return made
